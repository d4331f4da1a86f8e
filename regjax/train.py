"""Running the one program: a run, or K runs as one vmapped program, to the end.

`fit(config, data, seed)` trains one run; `RunGroup(runs).fit()` trains K runs (configs
that differ only in array-valued fields, regjax/sweep.py) as one program: K = 1 calls
`Program.epoch` (regjax/program.py) directly, K > 1 under `jax.vmap`. Both give a run's
record, history and reported weights in the same format, and a vmapped run equals the
separate run up to float rounding.

What the driver adds around the program:
  * Early stopping per run: a run that has stopped is frozen (its lane computes but
    keeps its state), is evaluated at once on its restored best weights -- the only time
    it sees the test set -- and is reported through `on_done`.
  * Compaction: once at most half of a program's lanes hold running runs, the running
    ones move into a program of the next power-of-two size (compiled once per size), so
    stopped runs stop costing compute.
  * Placement: lanes over the devices' 'members' axis, batches over the 'data' axis when
    there are fewer runs than devices (regjax/parallel.py), across hosts too.
  * Checkpoints and resume (regjax/checkpointing.py): the group's state, its lane layout
    and the finished runs' records, so that a group killed at any moment and resumed
    ends exactly as an uninterrupted one; a stop request checkpoints and raises
    `checkpointing.Interrupted`.
"""

import dataclasses
import json
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from regjax import checkpointing
from regjax import parallel
from regjax import program as program_lib
from regjax import regularizers
from regjax import sweep
from regjax import trainer as trainer_lib
from regjax.data import Dataset
from regjax.errors import ConfigError
from regjax.program import EvalSet, Program, RunState

Result = tuple[dict[str, Any], list[dict[str, float]], dict[str, Any] | None]
_MAX_SEED = 2**31 - 1  # Seeds enter the program as int32.
# Compiled epoch and evaluation programs by `RunGroup._program_key`, for this process.
_COMPILED: dict[str, Any] = {}
_EVAL_CHUNKS: dict[str, Any] = {}


@dataclasses.dataclass(frozen=True)
class Run:
  """One run: a full config, its seed and its data split."""
  config: ml_collections.ConfigDict
  seed: int
  data: Dataset


def _check_runs(runs: Sequence[Run]) -> None:
  if not runs:
    raise ConfigError('runs', [], 'at least one run')
  for run in runs:
    if not isinstance(run.seed, int) or isinstance(run.seed, bool) or not (
        0 <= run.seed <= _MAX_SEED):
      raise ConfigError('seed', run.seed, f'must be an integer in [0, {_MAX_SEED}]')
  sweep.check_same_program([r.config for r in runs])
  first = runs[0].data
  for run in runs[1:]:
    d = run.data
    if not first.same_source(d) or (d.num_train, d.num_val) != (first.num_train,
                                                                 first.num_val):
      raise ConfigError('data', d.name, 'runs of one program need splits of one loaded '
                        'source with equal training and validation sizes')


def _varying(values: Sequence[Any]) -> bool:
  """Whether per-run arrays differ (then they are stacked per lane) or are one array."""
  first = values[0]
  return any(v is not first and not np.array_equal(v, first) for v in values[1:])


def _tree_stack(trees: Sequence[Any]) -> Any:
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def _next_power_of_two(n: int) -> int:
  return 1 << max(n - 1, 0).bit_length()


class RunGroup:
  """K runs that differ only in array-valued fields, trained as one program.

  Attributes:
    runs: the K runs. program: their shared `program.Program`.
    compile_seconds: wall seconds spent compiling epoch programs (all sizes).
    lane_epochs: run-epochs computed by the last `fit` (each epoch costs its program's
      lane count, stopped and padding lanes included); run_epochs: those the runs
      needed (the epochs they trained). Their ratio is compaction's remaining waste.
  """

  def __init__(self, runs: Sequence[Run],
               eval_sets: Sequence[EvalSet] | Callable[[Run], Sequence[EvalSet]] = (),
               devices: Sequence[jax.Device] | None = None, compact: bool = True,
               penalty_terms: Sequence[str] | None = None,
               include: Sequence[str] | None = None, reuse_compiled: bool = True):
    """Validates the runs against each other; builds (does not compile) the program.

    Args:
      runs: the runs; configs may differ only in regjax/sweep.py's sweepable fields,
        and data must be splits of one source with equal sizes.
      eval_sets: extra sets each run evaluates in its epochs (metrics
        '<name>_loss/accuracy'), the same for every run or a function of the run.
      devices: where to compute (default: all devices of all hosts).
      compact: move running runs into smaller programs once half the lanes stopped.
      penalty_terms / include: the coupled penalties in the loss and the optimizer
        transforms in the chain; default: those with a strength > 0 in some run. A
        caller that trains more runs later with the same compiled program (e.g. other
        strengths) names them all, so the programs are one (see `_program_key`).
      reuse_compiled: use a program this process compiled already for an equal group;
        False compiles afresh (to measure compile time).
    """
    _check_runs(runs)
    self.runs = list(runs)
    self._sets = [list(eval_sets(r) if callable(eval_sets) else eval_sets) for r in runs]
    base = runs[0]
    configs = [r.config for r in runs]
    self._terms = tuple(trainer_lib.active_penalties(*configs) if penalty_terms is None
                        else penalty_terms)
    self._include = tuple(trainer_lib.active_transforms(*configs) if include is None
                          else include)
    self.program = Program(base.config, base.data, penalty_terms=self._terms,
                           include=self._include, eval_sets=self._sets[0])
    self.devices = list(jax.devices() if devices is None else devices)
    self.compact = compact
    self._reuse = reuse_compiled
    self.lane_epochs = self.run_epochs = 0
    self.compile_seconds = 0.0
    self._epochs = base.config.train.epochs
    self._shared = program_lib.shared_data(base.data, self._sets[0])
    # Per-run arrays: hparams, optimizer hyperparameters, seed, data index arrays.
    self._hp = [self.program.hparams(r.config) for r in runs]
    self._opt = [self.program.opt_hparams(r.config) for r in runs]
    data = [program_lib.run_data(r.data, s) for r, s in zip(runs, self._sets)]
    leaves, self._data_def = jax.tree.flatten(data[0])
    per_run = [jax.tree.leaves(d) for d in data]
    for d in per_run:
      if [np.shape(x) for x in d] != [np.shape(x) for x in leaves]:
        raise ConfigError('eval sets', [s.name for s in self._sets[0]],
                          'the same sets, of the same sizes, for every run')
    self._data_varies = [_varying([d[i] for d in per_run]) for i in range(len(leaves))]
    self._data = per_run
    self._compiled: dict[int, Any] = {}
    self._lowered: dict[int, Any] = {}
    self._placements: dict[int, parallel.Placement] = {}
    self._eval_chunk = None

  def __len__(self) -> int:
    return len(self.runs)

  # -------------------------------------------------------------------------- placement

  def _placement(self, lanes: int) -> parallel.Placement:
    if lanes not in self._placements:
      self._placements[lanes] = parallel.placement(
          lanes, self.program.trainer.batch_size, self.devices)
    return self._placements[lanes]

  def describe_placement(self) -> str:
    """How the group's runs and batches are placed, e.g. '12 runs over 8 devices
    (members axis 4 x data axis 2)'."""
    p = self._placement(len(self))
    return p.describe(len(self), len(self.devices))

  # -------------------------------------------------------------------------- lane inputs

  def _lane_inputs(self, lanes: Sequence[int]) -> dict[str, Any]:
    """Per-lane arrays (numpy) of the runs in `lanes` (-1 = padding, a copy of a run)."""
    real = [m for m in lanes if m >= 0]
    pick = [m if m >= 0 else real[0] for m in lanes]
    varying = [_tree_stack([self._data[m][i] for m in pick]) if v else self._data[0][i]
               for i, v in enumerate(self._data_varies)]
    return {
        'seed': np.asarray([self.runs[m].seed for m in pick], np.int32),
        'hparams': _tree_stack([self._hp[m] for m in pick]),
        'opt': _tree_stack([self._opt[m] for m in pick]),
        'data': varying,
    }

  def _program_key(self, lanes: int) -> str:
    """Everything the compiled epoch of `lanes` lanes depends on, as one string.

    Groups with equal keys (e.g. the seeds of one variant, each its own group) share
    one compiled program, as one compiled program served every seed before.
    """
    d = self.runs[0].data
    place = self._placement(lanes)
    return json.dumps([
        sweep.static_signature(self.runs[0].config), self._terms, self._include,
        regularizers.penalty_names(), regularizers.transform_names(),
        [(s.name, s.source, len(s.labels), s.rows is None) for s in self._sets[0]],
        d.num_classes, d.num_train, d.num_val, d.pool.shape, str(d.pool.dtype),
        d.test.shape, d.decode_table is None, d.standardized, self._data_varies, lanes,
        None if place.mesh is None else [place.members, place.data,
                                         [dev.id for dev in place.mesh.devices.flat]],
    ], default=str)

  def _epoch_fn(self, lanes: int):
    """The epoch of a program with `lanes` lanes (compiled on first use)."""
    local = self._compiled.get(lanes)
    if isinstance(local, jax.stages.Compiled):
      return local
    # An equal group may have compiled it since this one was traced (`trace` leaves the
    # jitted, uncompiled epoch here). Without this look-up every group compiled its own
    # copy, each copy's machine code stayed mapped, and a comparison of ~190 runs ran
    # out of memory maps (LLVM "Cannot allocate memory") on a 2-core CPU.
    cached = _COMPILED.get(self._program_key(lanes)) if self._reuse else None
    if cached is not None:
      self._compiled[lanes] = cached
      self._lowered.pop(lanes, None)
      return cached
    if local is not None:
      return local
    place = self._placement(lanes)
    prog = self.program.with_batch_sharding(place.batch_sharding())
    treedef, varies = self._data_def, self._data_varies

    if lanes == 1:
      # One run: the program itself, without vmap (a lane axis of 1 around it).
      def epoch(run, seed, hparams, active, epoch, data, shared, evaluate_sets):
        squeeze = lambda t: jax.tree.map(lambda a: a[0], t)
        data = [squeeze(x) if v else x for x, v in zip(data, varies)]
        new, metrics = prog.epoch(squeeze(run), seed[0], squeeze(hparams), active[0],
                                  epoch, jax.tree.unflatten(treedef, data), shared,
                                  evaluate_sets)
        expand = lambda t: jax.tree.map(lambda a: a[None], t)
        return expand(new), expand(metrics)
    else:
      def one(run, seed, hparams, active, epoch, data, shared, evaluate_sets):
        return prog.epoch(run, seed, hparams, active, epoch,
                          jax.tree.unflatten(treedef, data), shared, evaluate_sets)
      data_axes = [0 if v else None for v in varies]
      epoch = jax.vmap(one, in_axes=(0, 0, 0, 0, None, data_axes, None, None),
                       spmd_axis_name=None if place.mesh is None else parallel.MEMBERS_AXIS)
    if place.mesh is None:
      fn = jax.jit(epoch)
    else:
      fn = jax.jit(epoch, out_shardings=(place.lanes_sharding(), place.replicated()))
    self._compiled[lanes] = fn
    return fn

  def _place_lanes(self, lanes: Sequence[int]) -> dict[str, Any]:
    """Device arrays of the lanes' inputs, placed for a program of len(lanes) lanes."""
    place = self._placement(len(lanes))
    inputs = self._lane_inputs(lanes)
    on_lanes, rep = place.lanes_sharding(), place.replicated()
    return {
        'seed': parallel.put(inputs['seed'], on_lanes),
        'hparams': parallel.put(inputs['hparams'], on_lanes),
        'data': [parallel.put(x, on_lanes if v else rep)
                 for x, v in zip(inputs['data'], self._data_varies)],
        'shared': parallel.put({k: v for k, v in self._shared.items() if v is not None}, rep),
    }

  def _init(self, lanes: Sequence[int]) -> RunState:
    """The stacked initial states of the runs in `lanes`."""
    inputs = self._lane_inputs(lanes)
    sample = self._sample_x()
    if len(lanes) == 1:
      # Eagerly, as a single run always was (a jitted init may round differently).
      run = self.program.init(int(inputs['seed'][0]),
                              jax.tree.map(lambda a: a[0], inputs['opt']), sample)
      run = jax.tree.map(lambda a: a[None], run)
    else:
      run = jax.jit(jax.vmap(self.program.init, in_axes=(0, 0, None)))(
          inputs['seed'], inputs['opt'], sample)
    return parallel.put(run, self._placement(len(lanes)).lanes_sharding())

  def _sample_x(self) -> np.ndarray:
    d = self.runs[0].data
    return d.decode(d.pool[d.train_idx[:1]])

  def _template(self, lanes: int) -> RunState:
    """Shapes, dtypes and shardings of the stacked state of a `lanes`-lane program."""
    inputs = self._lane_inputs([0] * lanes)
    shapes = jax.eval_shape(jax.vmap(self.program.init, in_axes=(0, 0, None)),
                            inputs['seed'], inputs['opt'], self._sample_x())
    sharding = self._placement(lanes).lanes_sharding()
    if sharding is None:
      sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        shapes)

  def _lower(self, lanes: int, run: Any, placed: dict[str, Any]) -> Any:
    if lanes not in self._lowered:
      t0 = time.perf_counter()
      active = parallel.put(np.ones(lanes, bool), self._placement(lanes).lanes_sharding())
      self._lowered[lanes] = self._epoch_fn(lanes).lower(
          run, placed['seed'], placed['hparams'], active, jnp.int32(0), placed['data'],
          placed['shared'], jnp.bool_(True))
      self.compile_seconds += time.perf_counter() - t0
    return self._lowered[lanes]

  def _compile(self, lanes: int, run: RunState, placed: dict[str, Any]) -> Any:
    fn = self._epoch_fn(lanes)
    if isinstance(fn, jax.stages.Compiled):
      return fn
    lowered = self._lower(lanes, run, placed)
    # Ahead of time, so that compile seconds and per-epoch seconds are measured apart.
    t0 = time.perf_counter()
    compiled = lowered.compile()
    self.compile_seconds += time.perf_counter() - t0
    self._compiled[lanes] = _COMPILED[self._program_key(lanes)] = compiled
    del self._lowered[lanes]  # Only the compiled program is needed from now on.
    return compiled

  def trace(self) -> None:
    """Traces the group's first program without compiling it (a fraction of a second).
    Nothing is traced when an equal program was compiled already.

    Some bad values only show while tracing (an early_stopping.monitor that is not a
    metric); tracing every group before training makes them fail first. The trace is
    kept, so `fit` does not trace again.
    """
    lanes = self._placement(len(self)).size
    if isinstance(self._epoch_fn(lanes), jax.stages.Compiled):
      return
    self._lower(lanes, self._template(lanes), self._place_lanes(
        list(range(len(self))) + [-1] * (lanes - len(self))))

  # -------------------------------------------------------------------------- evaluation

  def _evaluate(self, variables: dict[str, Any], source: np.ndarray,
                rows: np.ndarray | None, labels: np.ndarray,
                data: Dataset) -> dict[str, float]:
    """Inference-mode {'loss', 'accuracy'} (floats) of one run's weights on the stored
    inputs `source[rows]` (all of it when rows is None) against `labels`, decoded as the
    run's `data` decodes them (its uint8 lookup, and its split's standardization).

    Fixed chunks of `train.eval_batch_size` (the last one padded) and float64 sums, so
    every set of every run shares one compiled chunk program.
    """
    if self._eval_chunk is None:
      key = self._program_key(1)
      self._eval_chunk = _EVAL_CHUNKS.setdefault(key, jax.jit(self.program.trainer.eval_sums))
    n = len(labels)
    size = min(self.program.trainer.eval_batch_size, max(n, 1))
    decoding = (data.decode_table, data.feature_shift, data.feature_scale)
    totals = np.zeros(2, np.float64)
    for start in range(0, n, size):
      idx = np.arange(start, min(start + size, n))
      xb = source[idx if rows is None else rows[idx]]
      yb = labels[idx]
      pad = size - len(idx)
      valid = np.arange(size) < len(idx)
      xb = np.pad(xb, [(0, pad)] + [(0, 0)] * (xb.ndim - 1))
      yb = np.pad(yb, (0, pad))
      totals += np.asarray(self._eval_chunk(variables['params'], variables['batch_stats'],
                                            xb, yb, valid, *decoding), np.float64)
    return {'loss': float(totals[0] / n), 'accuracy': float(totals[1] / n)}

  def _finish(self, member: int, run: RunState, history: list[dict[str, float]],
              stop: dict[str, Any]) -> Result:
    """The record and reported weights of a run that has stopped (one lane's state)."""
    stopper, trainer = self.program.stopper, self.program.trainer
    params, batch_stats = stopper.best_variables(run.stop, run.train.params,
                                                 run.train.batch_stats)
    variables = {'params': params, 'batch_stats': batch_stats}
    d = self.runs[member].data
    evals = {'train': self._evaluate(variables, d.pool, d.train_idx, d.y_train, d)}
    if d.num_val:
      evals['val'] = self._evaluate(variables, d.pool, d.val_idx, d.y_val, d)
    # The test set is touched exactly once per run, here, on the weights it reports.
    evals['test'] = self._evaluate(variables, d.test, None, d.y_test, d)
    stats = jax.device_get(trainer.weight_stats(params))
    record = program_lib.make_record(self.runs[member].seed, evals,
                                     int(run.stop.best_epoch), history, stop, stats,
                                     self.compile_seconds)
    return record, history, variables

  # -------------------------------------------------------------------------- training

  def fit(self, on_epoch: Callable[[int, dict[str, float]], None] | None = None,
          on_done: Callable[[int, Result], None] | None = None,
          checkpoints: checkpointing.Checkpoints | None = None,
          stop_requested: Callable[[], bool] | None = None,
          evaluate_sets_every: int = 1,
          on_state: Callable[[int, int, trainer_lib.TrainState], None] | None = None
          ) -> list[Result]:
    """Trains every run until it stops or `train.epochs` have run.

    Args:
      on_epoch: called as on_epoch(run index, row) with each running run's metrics row
        (floats; 'epoch' 0-based, 'seconds' the epoch's wall time shared among the
        runs still going) as soon as it is known.
      on_done: called as on_done(run index, (record, history, variables)) when a run
        has stopped and been evaluated.
      checkpoints: the group's checkpoints, or None. Training resumes from the newest
        one (epochs already done are not trained again, nor passed to `on_epoch`), and
        saves as the checkpoints' policy allows.
      stop_requested: polled before each epoch; when it returns True the state is
        checkpointed and `checkpointing.Interrupted` is raised.
      evaluate_sets_every: evaluate the extra sets after every this many epochs and
        after the last; other rows hold NaN for them.
      on_state: called as on_state(run index, epoch, train state) after each epoch of
        a running run (the state as host arrays; costs a copy, e.g. to keep weights).
    Returns:
      One (record, history, variables) per run, in run order: the run's summary record
      (see regjax/report.py), one metrics row per epoch, and the reported weights
      {'params', 'batch_stats'} (None for a run that had finished before a resume).
    Raises:
      checkpointing.Interrupted: after `stop_requested()` was true and the state saved.
    """
    k = len(self)
    self.lane_epochs = self.run_epochs = 0
    histories: list[list[dict[str, float]]] = [[] for _ in range(k)]
    stops: list[dict[str, Any] | None] = [None] * k
    results: list[Result | None] = [None] * k
    place = self._placement(k)
    lanes = list(range(k)) + [-1] * (place.size - k)
    start = 0
    restored = None
    if checkpoints is not None:
      restored = checkpoints.restore(lambda meta: {'run': self._template(len(meta['lanes']))})
    if restored is not None:
      meta = restored.meta
      start, lanes = restored.epoch, list(meta['lanes'])
      histories = [list(h) for h in meta['histories']]
      stops = list(meta['stops'])
      for m, record in enumerate(meta['records']):
        if record is not None:
          results[m] = (record, histories[m], None)
      run = restored.tree['run']
    else:
      run = self._init(lanes)
    placed = self._place_lanes(lanes)

    def save_meta() -> dict[str, Any]:
      return {'lanes': lanes, 'histories': histories, 'stops': stops,
              'records': [r[0] if r is not None else None for r in results]}

    monitor = self.program.stopper.monitor
    for epoch in range(start, self._epochs):
      live = [i for i, m in enumerate(lanes) if m >= 0 and results[m] is None]
      if not live:
        break
      if stop_requested is not None and stop_requested():
        if checkpoints is not None and epoch > 0:
          checkpoints.save(epoch, {'run': run}, save_meta(), force=True)
          checkpoints.wait()
        raise checkpointing.Interrupted(epoch)
      active = np.zeros(len(lanes), bool)
      active[live] = True
      epoch_fn = self._compile(len(lanes), run, placed)
      place = self._placement(len(lanes))
      evaluate_sets = ((epoch + 1) % evaluate_sets_every == 0 or epoch == self._epochs - 1)
      t0 = time.perf_counter()
      run, metrics = epoch_fn(run, placed['seed'], placed['hparams'],
                              parallel.put(active, place.lanes_sharding()),
                              jnp.int32(epoch), placed['data'], placed['shared'],
                              jnp.bool_(evaluate_sets))
      metrics, stop_state = parallel.to_host(
          (metrics, (run.stop.stopped, run.stop.reason, run.stop.stop_epoch)))
      seconds = (time.perf_counter() - t0) / len(live)
      self.lane_epochs += len(lanes)
      self.run_epochs += len(live)
      if on_state is not None:
        for i, lane_run in zip(live, self._take(run, live)):
          on_state(lanes[i], epoch, lane_run.train)
      finished = []
      for i in live:
        m = lanes[i]
        row = {'epoch': epoch, **{name: float(v[i]) for name, v in metrics.items()},
               'seconds': seconds}
        histories[m].append(row)
        if on_epoch is not None:
          on_epoch(m, row)
        stop = program_lib.stop_after(row, *(a[i] for a in stop_state), monitor)
        if stop is None and epoch == self._epochs - 1:
          stop = dict(program_lib.RAN_OUT)
        if stop is not None:
          stops[m] = stop
          finished.append(i)
      if finished:
        lane_runs = self._take(run, finished)
        for i, lane_run in zip(finished, lane_runs):
          m = lanes[i]
          results[m] = self._finish(m, lane_run, histories[m], stops[m])
          if on_done is not None:
            on_done(m, results[m])
      live = [i for i, m in enumerate(lanes) if m >= 0 and results[m] is None]
      if self.compact and live and len(live) <= len(lanes) // 2:
        lanes, run = self._compacted(lanes, live, run)
        placed = self._place_lanes(lanes)
      if checkpoints is not None and live:
        checkpoints.save(epoch + 1, {'run': run}, save_meta())
    return list(results)

  def _take(self, run: RunState, lanes: Sequence[int]) -> list[RunState]:
    """The states of the given lanes (host-readable, also across hosts)."""
    if self._placement(run.train.step.shape[0]).mesh is None:
      return [jax.tree.map(lambda a: a[i], run) for i in lanes]
    host = parallel.to_host(run)
    return [jax.tree.map(lambda a: a[i], host) for i in lanes]

  def _compacted(self, lanes: list[int], live: list[int], run: RunState
                 ) -> tuple[list[int], RunState]:
    """Moves the running lanes into a program of the next power-of-two size."""
    size = self._placement(_next_power_of_two(len(live))).size
    pick = live + [live[0]] * (size - len(live))
    new_lanes = [lanes[i] for i in live] + [-1] * (size - len(live))
    idx = np.asarray(pick, np.int32)
    sharding = self._placement(size).lanes_sharding()
    if sharding is None:
      new_run = jax.jit(lambda t: jax.tree.map(lambda a: a[idx], t))(run)
    else:
      new_run = parallel.put(jax.tree.map(lambda a: np.asarray(a)[idx],
                                          parallel.to_host(run)), sharding)
    return new_lanes, new_run


def fit(config: ml_collections.ConfigDict, data: Dataset, seed: int,
        on_epoch: Callable[[dict[str, float]], None] | None = None
        ) -> tuple[dict[str, Any], list[dict[str, float]], dict[str, Any]]:
  """One run: trains `config` on `data` from `seed`, with early stopping on the
  validation split, and tests once on the reported weights.

  Returns (record, history, variables): the summary record (regjax/report.py), one
  metrics row per epoch, and the reported {'params', 'batch_stats'}.
  """
  callback = None if on_epoch is None else (lambda _, row: on_epoch(row))
  return RunGroup([Run(config, seed, data)]).fit(on_epoch=callback)[0]
