"""`run(config, workdir)`: train every variant over every seed, then report the comparison.

This is what `python -m regjax.main` calls and what tests call. Each (variant, seed) is
trained with early stopping on the validation split and tested once on its restored
best weights (regjax/train.py). The same seed gives every variant the same
initialization key, data order and dropout keys, so per-seed differences are paired.

Runs are grouped into programs (regjax/train.py): one run each, or, per
`train.vectorize`, every run that can share a vmapped program (regjax/sweep.py).

The workdir belongs to one config (layout: regjax/workdir.py). It receives config.json
first; per program, orbax checkpoints while it trains (deleted when it ends); per run, a
finished-run file and its reported weights as soon as it stops; metrics.jsonl as runs
finish; and at the end results.json, results.csv and curves.png. Every results file is
written atomically: a results file that exists is complete.

Resuming: running the same config into the same workdir again skips finished runs
(their records are read back), continues an unfinished program from its last
checkpoint, and gives bit-for-bit the numbers of an uninterrupted run (wall-clock
seconds aside). A workdir that holds results of a different config is refused. SIGTERM
and Ctrl-C checkpoint the current program and stop with status 143 / 130
(`checkpointing.Preempted`).
"""

import contextlib
import dataclasses
import json
import os
import sys
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections

from regjax import checkpointing
from regjax import parallel
from regjax import progress as progress_lib
from regjax import report
from regjax import schema
from regjax import sweep
from regjax import tensorboard
from regjax import train
from regjax import tuning
from regjax import variants
from regjax import workdir as workdir_lib
from regjax import data as data_lib
from regjax.data import Dataset
from regjax.errors import ConfigError

Log = Callable[[str], None]
CONFIG_JSON = 'config.json'


def _stderr(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


def _check_top_level(config: ml_collections.ConfigDict) -> None:
  if not isinstance(config.seeds, int) or config.seeds < 1:
    raise ConfigError('seeds', config.seeds, 'must be an integer >= 1')
  if not isinstance(config.seed, int) or config.seed < 0:
    raise ConfigError('seed', config.seed, 'must be an integer >= 0')


def _as_json(config: ml_collections.ConfigDict) -> Any:
  """The config as config.json stores it (tuples as lists, NaN as null)."""
  return json.loads(json.dumps(report.to_jsonable(config.to_dict())))


def _first_difference(old: Any, new: Any, path: str = '') -> str:
  """'train.epochs: 3 in the workdir, 5 now' for the first field where two configs differ."""
  if isinstance(old, dict) and isinstance(new, dict):
    for key in sorted(set(old) | set(new)):
      where = f'{path}.{key}' if path else key
      if key not in old or key not in new:
        return (f"{where}: {'absent' if key not in old else 'present'} in the workdir, "
                f"{'absent' if key not in new else 'present'} now")
      if old[key] != new[key]:
        return _first_difference(old[key], new[key], where)
  return f'{path or "the config"}: {old!r} in the workdir, {new!r} now'


def _holds_results(workdir: str) -> bool:
  metrics = os.path.join(workdir, report.METRICS_JSONL)
  return (os.path.exists(os.path.join(workdir, report.RESULTS_JSON))
          or (os.path.exists(metrics) and os.path.getsize(metrics) > 0)
          or workdir_lib.holds_results(workdir))


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict,
                    write: bool = True) -> bool:
  """Creates `workdir` and claims it for `config`; returns whether it resumes.

  A workdir whose config.json equals `config` is resumed (True). A workdir with results
  (results.json, metrics or checkpoints) of a different config, or of an unknown one
  (no readable config.json), is refused with a one-line ConfigError, so an earlier
  comparison is never overwritten. Otherwise config.json is (re)written (False). With
  write=False (a process that only trains) the same checks run and nothing is written.
  """
  if os.path.isfile(workdir):
    raise ConfigError('workdir', workdir, 'is a file; pass a folder (new, or one this '
                      'config wrote before)')
  if write:
    try:
      os.makedirs(workdir, exist_ok=True)
      probe = os.path.join(workdir, f'.write-test-{os.getpid()}')
      with open(probe, 'w') as f:
        f.write('ok')
      os.remove(probe)
    except OSError as e:
      raise ConfigError('workdir', workdir, f'cannot be written ({e.strerror})') from None
  wanted = _as_json(config)
  path = os.path.join(workdir, CONFIG_JSON)
  try:
    with open(path, encoding='utf-8') as f:
      existing = json.load(f)
  except (OSError, ValueError):
    existing = None
  if existing == wanted:
    return True
  if _holds_results(workdir):
    if existing is None:
      raise ConfigError('workdir', workdir, 'holds results of an earlier run but no readable '
                        f'{CONFIG_JSON}; pass a new --workdir')
    raise ConfigError('workdir', workdir, 'holds the results of a different config ('
                      f'{_first_difference(existing, wanted)}); pass a new --workdir, or '
                      'the same config to resume')
  if write:
    report.atomic_write_json(path, config.to_dict())
  return False


@dataclasses.dataclass(frozen=True)
class Variant:
  """A variant of the comparison: its full config (grid values unset) and its grid."""
  name: str
  config: ml_collections.ConfigDict
  grid: variants.Grid


@dataclasses.dataclass(frozen=True)
class Planned:
  """One run of the comparison: a variant's grid point for one replicate.

  point: the grid index, or None for an untuned variant.
  """
  variant: str
  seed: int
  point: int | None
  run: train.Run

  @property
  def label(self) -> str:
    """'l2 seed 3' or 'l2 seed 3 point 5' (the seed, not a replicate index)."""
    return f'{self.variant} seed {self.seed}' + (
        '' if self.point is None else f' point {self.point}')

  def directory(self, workdir: str) -> str:
    """Its folder: runs/<variant>/seed_<s>[/point_<j>] (regjax/workdir.py)."""
    base = workdir_lib.run_dir(workdir, self.variant, self.seed)
    return base if self.point is None else os.path.join(base, f'point_{self.point}')


def _point_problem(config: ml_collections.ConfigDict, name: str, grid: variants.Grid,
                   e: ConfigError) -> ConfigError:
  """Names a bad value as the variant's (tune) field when the variant sets it; a value
  the variant inherits is the base config's field (that is where the user fixes it)."""
  field = e.field or ''
  if field in grid.fields:
    return ConfigError(f'variants.{name}.{variants.TUNE}.{field}', e.value, e.allowed)
  if field in variants.overrides(config, name):
    return ConfigError(f'variants.{name}.{field}', e.value, e.allowed)
  return e


def plan(config: ml_collections.ConfigDict) -> tuple[list[Variant], list[Planned]]:
  """Validates the comparison and lays out its runs, before anything trains.

  Returns the variants in table order and one run per (variant, replicate, grid point)
  in that order: replicate i has seed `config.seed + i`; with `resample` its data split
  uses `data.split_seed + seed` (the same for every variant, so runs stay paired). Each
  data source is loaded once, each split made once.
  """
  defaults = schema.default_config()
  schema.check_types(config, defaults)
  _check_top_level(config)
  if config.train.vectorize not in sweep.VECTORIZE_MODES:
    raise ConfigError('train.vectorize', config.train.vectorize,
                      f'one of {", ".join(sweep.VECTORIZE_MODES)}')
  planned_variants = []
  for name in variants.names(config):
    vcfg = variants.variant_config(config, name)
    try:
      schema.check_types(vcfg, defaults)
    except ConfigError as e:  # The base passed: the bad value is this variant's.
      raise ConfigError(f'variants.{name}.{e.field}', e.value, e.allowed) from None
    _check_top_level(vcfg)
    planned_variants.append(Variant(name, vcfg, variants.grid(config, name)))
  if any(v.grid.tuned for v in planned_variants):
    tuning.selection_metric(config)
  sizes = {v.name: len(v.grid.points) for v in planned_variants}
  if config.equal_grids and len(set(sizes.values())) > 1:
    raise ConfigError('equal_grids', True, 'every variant needs the same number of grid '
                      f'points (got {sizes}); make the grids equal, or set '
                      'equal_grids=False to compare unequal tuning budgets')
  sources: dict[str, Any] = {}
  splits: dict[str, Dataset] = {}
  runs = []
  for v in planned_variants:
    for i in range(v.config.seeds):
      seed = v.config.seed + i
      for j, point in enumerate(v.grid.points):
        rcfg = variants.point_config(v.config, point, v.name)
        if config.resample:
          rcfg.data.split_seed = v.config.data.split_seed + seed
        try:
          source_key = json.dumps([rcfg.data.name, rcfg.data.dir])
          if source_key not in sources:
            sources[source_key] = data_lib.load_source(rcfg.data)
          split_key = json.dumps(rcfg.data.to_dict(), sort_keys=True)
          if split_key not in splits:
            splits[split_key] = data_lib.split(sources[source_key], rcfg.data)
        except ConfigError as e:
          raise _point_problem(config, v.name, v.grid, e) from None
        runs.append(Planned(v.name, seed, j if v.grid.tuned else None,
                            train.Run(rcfg, seed, splits[split_key])))
  return planned_variants, runs


def make_groups(runs: Sequence[train.Run], mode: str) -> list[list[int]]:
  """Indices of `runs` grouped into programs: runs that can share one vmapped program
  when `sweep.should_vectorize` says so for them, else one run per program."""
  groups = []
  for group in sweep.vectorizable_groups([r.config for r in runs]):
    if sweep.should_vectorize([runs[k].config for k in group], mode):
      groups.append(group)
    else:
      groups += [[k] for k in group]
  return sorted(groups)


def _stopped(guard: checkpointing.PreemptionGuard, workdir: str, where: str, log: Log
             ) -> checkpointing.Preempted:
  """Logs the one line that says how to resume; returns the exception to raise."""
  line = (f'regjax: stopped by {checkpointing.signal_name(guard.signum)} {where}; finished '
          f'runs are kept. Resume with the same command and --workdir={workdir}')
  log(line)
  return checkpointing.Preempted(guard.signum, line)


def _outcome(record: dict[str, Any]) -> str:
  if record['diverged']:
    return (f"DIVERGED at epoch {record.get('diverged_epoch')} (non-finite "
            f"{record.get('diverged_metric') or 'loss'}); left out of the comparison")
  return (f"test_acc {100 * record['test_accuracy']:.2f}%, best epoch "
          f"{record['best_epoch']}, stopped at {record['stop_epoch']} "
          f"({record['stop_reason']})")


def _metrics_lines(p: Planned, record: dict[str, Any], rows: list[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
  point = {} if p.point is None else {'point': p.point}
  return [{'variant': p.variant, 'seed': record['seed'], **point, **row} for row in rows]


def _rebuild_metrics(path: str | None, runs: Sequence[Planned], finished: list[Any]) -> int:
  """Rewrites metrics.jsonl (atomically) from the finished runs that precede the first
  unfinished one, and returns how many runs that is.

  The finished-run files are the truth and metrics.jsonl is derived from them: rows of a
  run that was cut short vanish, and appending the later runs in run order makes the
  file what an uninterrupted run writes, without duplicate or missing rows.
  """
  prefix = next((k for k, f in enumerate(finished) if f is None), len(finished))
  if path is None:  # Not the writing process.
    return prefix
  lines = [line for k in range(prefix) for line in _metrics_lines(runs[k], *finished[k])]
  report.atomic_write_text(path, ''.join(
      json.dumps(report.to_jsonable(line), allow_nan=False) + '\n' for line in lines))
  return prefix


class _Reported:
  """Keeps the weights file of only the best point so far of each (variant, seed).

  A tuned replicate reports its chosen point, the one best on validation (ties: the first
  in grid order); its other points' weights are not kept, so a workdir holds one weights
  file per replicate however large the grid.
  """

  def __init__(self, runs: Sequence[Planned], workdir: str, metric: str, mode: str):
    self.runs, self.workdir, self.metric, self.mode = runs, workdir, metric, mode
    self.best: dict[tuple[str, int], tuple[float, int, int]] = {}

  def _key(self, k: int, record: Mapping[str, Any]) -> tuple[float, int]:
    # tuning.choose's order: the better score, then the lower grid index.
    return tuning.score(record, self.metric, self.mode), -self.runs[k].point

  def note(self, k: int, record: Mapping[str, Any]) -> bool:
    """Records finished run k; whether its weights are (so far) the ones to report."""
    p = self.runs[k]
    if p.point is None:
      return True
    key = self._key(k, record)
    current = self.best.get((p.variant, p.seed))
    if current is not None and current[:2] >= key:
      return False
    self.best[(p.variant, p.seed)] = (*key, k)
    return True

  def drop_previous(self, k: int, previous: int | None) -> None:
    """Deletes the weights of the point that run k replaced as the best."""
    if previous is not None and previous != k:
      path = os.path.join(self.runs[previous].directory(self.workdir),
                          workdir_lib.VARIABLES_FILE)
      if os.path.exists(path):
        os.remove(path)


def run(config: ml_collections.ConfigDict, workdir: str, log: Log = _stderr,
        checkpoint_every_s: float | None = checkpointing.DEFAULT_INTERVAL_S,
        name: str = '',
        on_epoch: Callable[[str, dict[str, float]], None] | None = None
        ) -> dict[str, Any]:
  """Runs (or resumes) the comparison of `config` and writes its outputs into `workdir`.

  Args:
    config: a full config with `variants` (regjax/schema.py, configs/*.py).
    workdir: output folder: new, or one this same config wrote before (resumed).
    log: receives each progress line (default: stderr, where a terminal gets a live bar
      over runs x epochs; regjax/progress.py): what runs where, one line per finished
      run with the time left, and between them at most one line a minute.
    checkpoint_every_s: least seconds of training between two checkpoints of a program
      (regjax/checkpointing.py); 0 = after every epoch whose previous save has been
      written; None = no checkpoints (finished runs are still recorded and not rerun;
      unfinished ones start over). It does not change any result.
    name: what the figures' titles call the comparison, e.g. 'configs/l2.py'.
    on_epoch: called as on_epoch(run label, metrics row) after each epoch of each run
      (e.g. 'l2 seed 3 point 2'), for a notebook's own display.
  Returns:
    {'rows': summary rows (report.summarize), 'records': one per (variant, replicate),
     the chosen grid point's for a tuned variant, 'choices': what each variant chose,
     'table': the text table, 'paths': the files written}.
  Raises:
    ConfigError: bad input, or a workdir holding a different config's results.
    checkpointing.Preempted: on SIGTERM / SIGINT, after checkpointing.
  """
  if checkpoint_every_s is not None and not (
      isinstance(checkpoint_every_s, (int, float)) and checkpoint_every_s >= 0):
    raise ConfigError('checkpoint_every_s', checkpoint_every_s, 'must be >= 0 or None')
  with checkpointing.PreemptionGuard() as guard:
    planned_variants, runs = plan(config)
    # Only a tuned comparison chooses, so only it needs a validation metric to choose by.
    tuned = any(v.grid.tuned for v in planned_variants)
    metric, mode = tuning.selection_metric(config) if tuned else ('val_loss', 'min')
    groups = []
    for ks in make_groups([p.run for p in runs], config.train.vectorize):
      try:
        group = train.RunGroup([runs[k].run for k in ks])
        group.trace()  # A bad value in the last group fails now, not after the first.
      except ConfigError as e:
        v = next(v for v in planned_variants if v.name == runs[ks[0]].variant)
        raise _point_problem(config, v.name, v.grid, e) from None
      groups.append((ks, group))
    # With several processes (jax.distributed) every process trains, process 0 writes.
    writer = jax.process_index() == 0
    if not writer:
      log = lambda line: None
    prepare_workdir(workdir, config, write=writer)
    env = parallel.environment()
    # A live bar when the default stderr is a terminal; plain lines otherwise.
    progress = progress_lib.Progress(
        len(runs), max(p.run.config.train.epochs for p in runs), stream=sys.stderr,
        log=None if log is _stderr else log, live=None if log is _stderr else False)
    log = progress.write
    log(f"Computing on {env['devices']} x {env['device_kind']} ({env['backend']}), JAX "
        f"{env['jax']}, matmul precision {env['matmul_precision'] or 'JAX default'}; "
        f"data: {describe_data(config, runs[0].run.data)}")
    mode = config.train.vectorize
    if all(len(ks) == 1 for ks, _ in groups):
      how = (f"{len(runs)} runs, one after another (train.vectorize={mode!r}"
             + (': vmapped on GPU/TPU only' if mode == 'auto' else '') + ')')
    else:
      how = (f"{len(runs)} runs as {len(groups)} program{'s' if len(groups) != 1 else ''} "
             f"(train.vectorize={mode!r})")
    log(f"{how}; each: "
        f"{'; '.join(dict.fromkeys(group.describe_placement() for _, group in groups))}")
    directories = [p.directory(workdir) for p in runs]
    finished = [workdir_lib.read_result(d) for d in directories]
    reported = _Reported(runs, workdir, metric, mode)
    for k, f in enumerate(finished):
      if f is not None:
        reported.note(k, f[0])
    metrics_path = os.path.join(workdir, report.METRICS_JSONL)
    written = _rebuild_metrics(metrics_path if writer else None, runs, finished)

    with progress, (report.MetricsWriter(metrics_path) if writer
                    else contextlib.nullcontext()) as metrics:
      def done(k: int, record: dict[str, Any], rows: list[dict[str, Any]],
               variables: dict[str, Any] | None) -> None:
        nonlocal written
        p = runs[k]
        # run_dir: where its files are, relative to the workdir (regjax/workdir.py);
        # split_seed: the data split it trained on (regjax/workdir.py `run_config`).
        record = {'variant': p.variant, **record,
                  **({} if p.point is None else {'point': p.point}),
                  'split_seed': p.run.config.data.split_seed,
                  'run_dir': os.path.relpath(directories[k], workdir)}
        finished[k] = (record, rows)
        previous = reported.best.get((p.variant, p.seed), (None, None, None))[2]
        keep = reported.note(k, record)
        progress.on_done(p.label, record, _outcome(record))
        if not writer:
          return
        # Weights first, then the result file that marks the run finished.
        if keep and variables is not None:
          workdir_lib.save_variables(directories[k], variables)
        workdir_lib.write_result(directories[k], record, rows)
        if keep:
          reported.drop_previous(k, previous)
        # Scalars for TensorBoard (tensorboard --logdir <workdir>/tensorboard).
        tensorboard.write_rows(tensorboard.run_logdir(workdir, p.variant, p.seed, p.point),
                               rows)
        while written < len(runs) and finished[written] is not None:
          metrics.write_all(_metrics_lines(runs[written], *finished[written]))
          written += 1

      for ks, group in groups:
        if all(finished[k] is not None for k in ks):
          for k in ks:
            progress.on_done(runs[k].label, finished[k][0],
                             f'{_outcome(finished[k][0])}; done earlier', trained=False)
          continue
        if guard.requested:
          raise _stopped(guard, workdir, f'before {runs[ks[0]].label}', log)
        where = workdir_lib.checkpoint_dir(workdir, [directories[k] for k in ks])
        label = runs[ks[0]].label if len(ks) == 1 else f'a program of {len(ks)} runs'
        prefix = f'  [{label}] '
        ckpt = (None if checkpoint_every_s is None else checkpointing.Checkpoints(
            where, checkpoint_every_s, log=lambda line: log(prefix + line)))

        def epoch_done(j: int, row: dict[str, float]) -> None:
          progress.on_epoch(runs[ks[j]].label, row)
          if on_epoch is not None:
            on_epoch(runs[ks[j]].label, row)

        with ckpt or contextlib.nullcontext():
          try:
            group.fit(on_epoch=epoch_done, on_done=lambda j, result: done(ks[j], *result),
                      checkpoints=ckpt, stop_requested=lambda: guard.requested)
          except checkpointing.Interrupted as e:
            kept = 'checkpointed' if ckpt else 'not checkpointed (checkpoints are off)'
            raise _stopped(guard, workdir, f'in {label}, {kept} after {e.epochs_done} '
                           'epochs', log) from None
        if writer:
          workdir_lib.remove_checkpoints(workdir, where)

  return _report(config, workdir, planned_variants, runs, finished, metric, mode, env,
                 writer, name)


def describe_data(config: ml_collections.ConfigDict, data: Dataset | None = None) -> str:
  """The data a comparison trains on, saying whenever labels are noised or the training
  split is subsampled, e.g. 'digits (1212 train / 135 val / 450 test), 30% of training
  labels replaced at random (data.label_noise=0.3), a new split per replicate'."""
  d = config.data
  text = d.name
  if data is not None:
    text += f' ({data.num_train} train / {data.num_val} val / {len(data.y_test)} test)'
  if d.train_size:
    text += f', training split subsampled to {d.train_size} (data.train_size)'
  if d.label_noise:
    text += (f', {d.label_noise:.0%} of training labels replaced at random '
             f'(data.label_noise={d.label_noise:g})')
  if config.resample and (d.label_noise or d.train_size or d.validation_fraction):
    text += ', a new split per replicate (resample)'
  return text


def _report(config: ml_collections.ConfigDict, workdir: str,
            planned_variants: Sequence[Variant], runs: Sequence[Planned],
            finished: Sequence[Any], metric: str, mode: str, env: dict[str, Any],
            writer: bool, name: str) -> dict[str, Any]:
  """Chooses each tuned replicate's point, then summarizes, tables and writes it all."""
  records, history, choices, selection = [], [], {}, []
  by_run = {}
  for k, p in enumerate(runs):
    by_run.setdefault((p.variant, p.seed), []).append(k)
  for v in planned_variants:
    replicate_records = []
    for seed in range(v.config.seed, v.config.seed + v.config.seeds):
      ks = by_run[(v.name, seed)]
      record = tuning.replicate_record(v.grid, [finished[k][0] for k in ks], metric, mode)
      chosen = ks[record['chosen_index']]
      if not v.grid.tuned:  # An untuned variant's record is its run's record.
        for key in ('chosen', 'chosen_index', 'select', 'grid'):
          record.pop(key)
      replicate_records.append(record)
      history += _metrics_lines(runs[chosen], *finished[chosen])
      if writer:  # Weights of points that were not chosen are not reported: drop them.
        for k in ks:
          path = os.path.join(runs[k].directory(workdir), workdir_lib.VARIABLES_FILE)
          if k != chosen and os.path.exists(path):
            os.remove(path)
    records += replicate_records
    choices[v.name] = tuning.summarize_choices(v.grid, replicate_records)
    if v.grid.tuned:
      selection.append(tuning.selection_entry(v.name, v.grid, replicate_records))
  baseline = planned_variants[0].name
  rows = report.summarize(records, baseline=baseline)
  for row in rows:
    row['chosen'] = choices[row['variant']]['fields']
    row['widen_grid'] = choices[row['variant']]['widen']
  table = (f'Data: {describe_data(config, runs[0].run.data)}\n'
           + report.format_table(rows, baseline=baseline))
  lines = tuning.format_choices(choices, metric)
  if lines:
    table += '\n' + '\n'.join(lines)
  paths = {}
  if writer:
    paths = report.write_results(workdir, rows, records, environment=env)
    title = f'{name}: {describe_data(config)}' if name else describe_data(config)
    paths['curves'] = report.plot_curves(history, os.path.join(workdir, 'curves.png'),
                                         title=title)
    if len(rows) > 1:
      paths['effects'] = report.plot_effects(rows, os.path.join(workdir, 'effects.png'),
                                             title=title)
    if selection:
      paths['selection'] = report.plot_selection(
          selection, os.path.join(workdir, 'selection.png'), title=title)
  return {'rows': rows, 'records': records, 'choices': choices, 'table': table,
          'paths': paths}
