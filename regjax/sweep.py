"""Vectorized runs: K members (seeds x array-valued strengths) in ONE compiled program.

A member is a (config, seed) pair. Members may differ only in values that enter the
training step as arrays (`SWEEPABLE_FIELDS`): the seed (keys), the coupled penalty
strengths (`hparams`) and the optimizer's numeric hyperparameters (which live in
`opt_state.hyperparams`, see regjax/optimizers.py). Everything else (model, data,
batch size, epochs, early-stopping settings, optimizer name and schedule, masks) is the
program and must be equal.

`Sweep.fit` stacks the K train states, hyperparameters and early-stopping states on a
leading member axis and compiles one epoch = `jax.vmap` over members of (train_epoch +
validation evaluate + early-stopping update). The epoch loop stays in Python so that a
member that has stopped can be frozen: its state is selected back (`jnp.where` on the
member's `active` flag) so later epochs leave it bit-for-bit unchanged, and the loop ends
when every member has stopped or at `train.epochs`. At the end each member's best
weights are restored and evaluated, and records / histories come out in the format of
`train.Runner.fit`, so a sweep is a drop-in replacement for K separate runs.

Cost: every epoch computes all K members, stopped or not (vmap cannot skip lanes), so
the wall time is that of the slowest member. What it saves is K - 1 compilations and, on
an accelerator that one small MLP leaves mostly idle, most of the other members' time
(expected; not yet measured on one). On a 2-core CPU the MLPs are already compute-bound, so a vmapped epoch costs about
K single epochs (experiments/benchmark.py); `should_vectorize` encodes that.
"""

import dataclasses
import json
import math
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from regjax import early_stopping
from regjax import optimizers
from regjax import train
from regjax.data import Dataset
from regjax.early_stopping import EarlyStopping
from regjax.errors import ConfigError

# Dotted config fields a sweep may vary across members (all enter the step as arrays).
SWEEPABLE_FIELDS = (
    'seed',
    'penalty.l1', 'penalty.l2',
    'optimizer.learning_rate', 'optimizer.momentum', 'optimizer.b1', 'optimizer.b2',
    'optimizer.grad_clip_norm', 'optimizer.l1_subgradient', 'optimizer.weight_decay',
    'optimizer.l1_prox', 'optimizer.max_norm',
)
# Top-level fields that describe the comparison, not one run.
_NOT_A_RUN = ('seeds', 'order', 'only', 'variants')

Member = tuple[ml_collections.ConfigDict, int]


class Interrupted(Exception):
  """`Sweep.fit` stopped on request before epoch `epochs_done` (nothing is kept)."""

  def __init__(self, epochs_done: int):
    super().__init__(f'sweep interrupted after {epochs_done} epochs')
    self.epochs_done = epochs_done


Result = tuple[dict[str, Any], list[dict[str, float]], dict[str, Any]]
_RAN_OUT = {'stop_reason': train.STOP_MAX_EPOCHS, 'diverged': False, 'diverged_epoch': None,
            'diverged_metric': None}


def _flat(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """{'a.b.c': value} for every leaf of the config."""
  out = {}

  def walk(node, prefix):
    for key, value in node.items():
      path = f'{prefix}{key}'
      if isinstance(value, (dict, ml_collections.ConfigDict)):
        walk(value, f'{path}.')
      else:
        out[path] = value
  walk(config.to_dict() if hasattr(config, 'to_dict') else config, '')
  return out


def _static_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return {k: v for k, v in _flat(config).items()
          if k not in SWEEPABLE_FIELDS and k.split('.')[0] not in _NOT_A_RUN}


def static_signature(config: ml_collections.ConfigDict) -> str:
  """A string equal for two configs iff they differ at most in SWEEPABLE_FIELDS."""
  return json.dumps(_static_fields(config), sort_keys=True, default=repr)


def can_vectorize(configs: Sequence[ml_collections.ConfigDict]) -> bool:
  """True when all configs differ only in array-valued fields (SWEEPABLE_FIELDS)."""
  if not configs:
    return False
  first = static_signature(configs[0])
  return all(static_signature(c) == first for c in configs[1:])


def vectorizable_groups(configs: Sequence[ml_collections.ConfigDict]) -> list[list[int]]:
  """Partitions config indices into groups that can each run as one sweep.

  Groups keep the order of first appearance, and indices keep their order inside a
  group, e.g. [baseline, l2, dropout, wd] -> [[0, 1, 3], [2]].
  """
  groups: dict[str, list[int]] = {}
  for i, config in enumerate(configs):
    groups.setdefault(static_signature(config), []).append(i)
  return list(groups.values())


VECTORIZE_MODES = ('auto', 'always', 'never')


def should_vectorize(configs: Sequence[ml_collections.ConfigDict], mode: str = 'auto',
                     backend: str | None = None) -> bool:
  """Whether a comparison should train these configs as one sweep.

  'always' / 'never' decide; 'auto' says yes on an accelerator (backend 'gpu' / 'tpu';
  default: jax.default_backend()) when at least two configs can be vectorized. On a CPU
  'auto' says no: there the small MLPs are already compute-bound, so one vmapped program
  is no faster per member-epoch, and it keeps computing members that have stopped early
  (experiments/benchmark.py measures both). Raises ConfigError on an unknown mode.
  """
  if mode not in VECTORIZE_MODES:
    raise ConfigError('train.vectorize', mode, f'one of {", ".join(VECTORIZE_MODES)}')
  if mode == 'never' or len(configs) < 2 or not can_vectorize(configs):
    return False
  return mode == 'always' or (backend or jax.default_backend()) != 'cpu'


def _check_members(members: Sequence[Member]) -> None:
  if not members:
    raise ConfigError('sweep members', [], 'at least one (config, seed) pair')
  for _, seed in members:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
      raise ConfigError('seed', seed, 'must be an integer >= 0')
  first = _static_fields(members[0][0])
  for config, _ in members[1:]:
    other = _static_fields(config)
    for key in sorted(set(first) | set(other)):
      if first.get(key) != other.get(key):
        raise ConfigError(key, other.get(key),
                          f'the same value as the first member ({first.get(key)!r}): a '
                          f'sweep may vary only {", ".join(SWEEPABLE_FIELDS)}')


class Sweep:
  """Trains K members that differ only in SWEEPABLE_FIELDS as one vmapped program.

  Attributes:
    configs: the K member configs; seeds: their K seeds.
    trainer: the shared `train.Trainer` (one optimizer chain for all members: every
      optional transform that any member uses is included, a no-op at 0 for the rest).
    compile_seconds: wall seconds of compiling the vmapped epoch (once per Sweep).
  """

  def __init__(self, members: Sequence[Member], data: Dataset):
    """Validates the members against each other and `data`; compiles nothing yet."""
    _check_members(members)
    self.configs = [config for config, _ in members]
    self.seeds = [int(seed) for _, seed in members]
    self.data = data
    base = self.configs[0]
    if len(data.x_val) == 0 and base.early_stopping.enabled:
      raise ConfigError('data.validation_fraction', base.data.validation_fraction,
                        'early stopping needs a validation split: use a fraction > 0 or '
                        'set early_stopping.enabled=False')
    for config in self.configs:
      optimizers.validate_optimizer_config(config.optimizer)
    include = tuple(k for k in optimizers.OPTIONAL_TRANSFORMS
                    if any(c.optimizer[k] > 0 for c in self.configs))
    # A coupled penalty is in the shared loss when any member's strength is > 0 (a
    # member at 0 then adds exact zeros), and left out otherwise, as in a Runner.
    trainer = train.make_trainer(base, data.num_classes, len(data.x_train),
                                 train.active_penalties(*(c.penalty for c in self.configs)))
    # Same step count as make_trainer's optimizer, so a cosine schedule matches a Runner.
    total_steps = (len(data.x_train) // base.train.batch_size) * base.train.epochs
    self.trainer = dataclasses.replace(
        trainer, tx=optimizers.make_optimizer(base.optimizer, total_steps, include))
    self._opt_names = optimizers.hyperparam_names(base.optimizer, include)
    self.stopper = EarlyStopping.from_config(base.early_stopping)
    penalty = [train.penalty_hparams(c.penalty) for c in self.configs]
    self.hparams = {k: jnp.stack([p[k] for p in penalty]) for k in ('l1', 'l2')}
    self.opt_hparams = {k: jnp.asarray([float(c.optimizer[k]) for c in self.configs],
                                       jnp.float32) for k in self._opt_names}
    self.compile_seconds = 0.0
    self._has_val = len(data.x_val) > 0
    self._device = {name: jax.device_put(getattr(data, name)) for name in
                    ('x_train', 'y_train', 'x_val', 'y_val')}
    self._eval_chunk = None

  def __len__(self) -> int:
    return len(self.seeds)

  def init_member(self, key: jax.Array, opt_hparams: dict[str, jax.Array]):
    """One member's (TrainState, EarlyStoppingState, (shuffle_key, dropout_key)).

    Splits `key` exactly as `train.Runner` does, so member i equals the separate run
    with the same seed; `opt_hparams` (name -> f32 scalar) go into opt_state.
    """
    init_key, shuffle_key, dropout_key = jax.random.split(key, 3)
    state = self.trainer.init(init_key, self._device['x_train'][:1])
    state = state.replace(
        opt_state=optimizers.set_hyperparams(state.opt_state, **opt_hparams))
    return state, self.stopper.init(state.params, state.batch_stats), (shuffle_key,
                                                                       dropout_key)

  def member_epoch(self, state, es_state, keys, hparams, active, epoch, x, y, x_val,
                   y_val):
    """One member's epoch: train, validate, update early stopping; pure.

    Args:
      state, es_state, keys: the member's TrainState, EarlyStoppingState and
        (shuffle_key, dropout_key).
      hparams: {'l1', 'l2'} f32 scalars. active: bool scalar; when False the member
        has stopped and both states come back unchanged (the frozen parameters).
      epoch: int32 scalar, shared by all members. x, y, x_val, y_val: the data,
        shared (not vmapped).
    Returns:
      (state, es_state, metrics) with the metrics of `train.Runner`'s epoch.
    """
    trainer = self.trainer
    new_state, train_metrics = trainer.train_epoch(state, x, y, hparams, keys[0],
                                                   keys[1], epoch)
    metrics = dict(train_metrics, **trainer.weight_stats(new_state.params))
    if self._has_val:
      val = trainer.evaluate(new_state.params, new_state.batch_stats, x_val, y_val)
      metrics.update(val_loss=val['loss'], val_accuracy=val['accuracy'])
    new_es = self.stopper.update(es_state, metrics, new_state.params,
                                 new_state.batch_stats)
    # A select rather than a branch: under vmap each member takes its own side.
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(active, a, b), new, old)
    return keep(new_state, state), keep(new_es, es_state), metrics

  def _init_all(self):
    keys = jnp.stack([jax.random.key(seed) for seed in self.seeds])
    return jax.jit(jax.vmap(self.init_member))(keys, self.opt_hparams)

  def _compile(self, state, es_state, keys):
    t0 = time.perf_counter()
    fn = jax.vmap(self.member_epoch, in_axes=(0, 0, 0, 0, 0) + (None,) * 5)
    d = self._device
    compiled = jax.jit(fn).lower(
        state, es_state, keys, self.hparams, jnp.ones(len(self), bool), jnp.int32(0),
        d['x_train'], d['y_train'], d['x_val'], d['y_val']).compile()
    self.compile_seconds = time.perf_counter() - t0
    return compiled

  def fit(self, on_epoch: Callable[[int, dict[str, float]], None] | None = None,
          stop_requested: Callable[[], bool] | None = None) -> list[Result]:
    """Trains all members until each has stopped or `train.epochs` have run.

    Args:
      on_epoch: called as on_epoch(member_index, row) with each running member's
        metrics row as soon as its epoch is known.
      stop_requested: polled before each epoch; when it returns True, `Interrupted` is
        raised (a sweep keeps no checkpoints: its members start over next time).
    Returns:
      One (record, history, {'params', 'batch_stats'}) per member, in member order,
      with the keys and meaning of `train.Runner.fit`, except: a row's 'seconds' (and
      so 'seconds_per_epoch') is the vmapped epoch's wall time divided by K, each
      member's share; 'compile_seconds' is the one compilation that all members share.
    """
    k, d = len(self), self._device
    state, es_state, keys = self._init_all()
    epoch_fn = self._compile(state, es_state, keys)
    active = np.ones(k, bool)
    histories: list[list[dict[str, float]]] = [[] for _ in range(k)]
    stops: list[dict[str, Any]] = [dict(_RAN_OUT) for _ in range(k)]
    for epoch in range(self.configs[0].train.epochs):
      if not active.any():
        break
      if stop_requested is not None and stop_requested():
        raise Interrupted(epoch)
      t0 = time.perf_counter()
      state, es_state, metrics = epoch_fn(
          state, es_state, keys, self.hparams, jnp.asarray(active), jnp.int32(epoch),
          d['x_train'], d['y_train'], d['x_val'], d['y_val'])
      metrics, es_host = jax.device_get((metrics, (es_state.stopped, es_state.reason,
                                                   es_state.stop_epoch)))
      seconds = (time.perf_counter() - t0) / k
      for i in np.flatnonzero(active):
        row = {'epoch': epoch, **{name: float(v[i]) for name, v in metrics.items()},
               'seconds': seconds}
        histories[i].append(row)
        if on_epoch is not None:
          on_epoch(int(i), row)
        stop = self._stop_after(row, *(a[i] for a in es_host))
        if stop is not None:
          stops[i], active[i] = stop, False
    return self._records(state, es_state, histories, stops)

  def _stop_after(self, row: dict[str, float], stopped: bool, reason: int,
                  stop_epoch: int) -> dict[str, Any] | None:
    """Why a member stops after the epoch of `row` (train.Runner's rule), or None.

    A non-finite training loss, or early stopping's non-finite monitored value, is a
    divergence; the dict has the record's 'stop_reason' / 'diverged*' values.
    """
    if not math.isfinite(row['train_loss']):
      return {'stop_reason': train.STOP_NON_FINITE, 'diverged': True,
              'diverged_epoch': row['epoch'], 'diverged_metric': 'train_loss'}
    if bool(stopped):
      name = early_stopping.reason_name(int(reason))
      diverged = name == train.STOP_NON_FINITE
      return {'stop_reason': name, 'diverged': diverged,
              'diverged_epoch': int(stop_epoch) if diverged else None,
              'diverged_metric': self.stopper.monitor if diverged else None}
    return None

  def _records(self, state, es_state, histories, stops) -> list[Result]:
    params, batch_stats = jax.jit(jax.vmap(self.stopper.best_variables))(
        es_state, state.params, state.batch_stats)
    data, nan = self.data, float('nan')
    final = {'train': self.evaluate(params, batch_stats, data.x_train, data.y_train)}
    if self._has_val:
      final['val'] = self.evaluate(params, batch_stats, data.x_val, data.y_val)
    # The test set is touched exactly once per member, on the weights it reports.
    final['test'] = self.evaluate(params, batch_stats, data.x_test, data.y_test)
    stats = jax.device_get(jax.jit(jax.vmap(self.trainer.weight_stats))(params))
    best_epochs = np.asarray(jax.device_get(es_state.best_epoch))
    out = []
    for i, seed in enumerate(self.seeds):
      history = histories[i]
      split = lambda name, what: (float(final[name][what][i]) if name in final else nan)
      record = {
          'seed': seed,
          'test_accuracy': split('test', 'accuracy'),
          'test_loss': split('test', 'loss'),
          'train_accuracy': split('train', 'accuracy'),
          'train_loss': split('train', 'loss'),
          'val_accuracy': split('val', 'accuracy'),
          'val_loss': split('val', 'loss'),
          'best_epoch': int(best_epochs[i]),
          'stop_epoch': len(history) - 1,
          'epochs_run': len(history),
          'stop_reason': stops[i]['stop_reason'],
          'zero_fraction': float(stats['zero_fraction'][i]),
          'weight_l2': float(stats['weight_l2'][i]),
          'weight_l1': float(stats['weight_l1'][i]),
          'seconds_per_epoch': float(np.mean([r['seconds'] for r in history])),
          'compile_seconds': self.compile_seconds,
          'diverged': stops[i]['diverged'],
          # 0-based epoch whose loss (or monitored metric) was first non-finite; else None.
          'diverged_epoch': stops[i]['diverged_epoch'],
          'diverged_metric': stops[i]['diverged_metric'],
      }
      member = lambda tree: jax.tree.map(lambda a: a[i], tree)
      out.append((record, history, {'params': member(params),
                                    'batch_stats': member(batch_stats)}))
    return out

  def evaluate(self, params, batch_stats, x: np.ndarray, y: np.ndarray
               ) -> dict[str, np.ndarray]:
    """Inference-mode {'loss', 'accuracy'} (float64 arrays (K,)) of every member.

    params / batch_stats carry the member axis; x (N, ...), y (N,) are shared. Chunks
    and float64 accumulation as in `train.Runner.evaluate`, so the sums match it.
    """
    if self._eval_chunk is None:
      self._eval_chunk = jax.jit(jax.vmap(self.trainer.eval_sums,
                                          in_axes=(0, 0, None, None, None)))
    totals = train.chunked_sums(self._eval_chunk, params, batch_stats, x, y,
                                self.trainer.eval_batch_size)
    return {'loss': totals[:, 0] / len(x), 'accuracy': totals[:, 1] / len(x)}


def fit_many(members: Sequence[Member], data: Dataset,
             on_epoch: Callable[[int, dict[str, float]], None] | None = None,
             stop_requested: Callable[[], bool] | None = None) -> list[Result]:
  """Trains [(config, seed), ...] as one vmapped sweep (see `Sweep.fit` for the hooks).

  Returns one (record, history, variables) per member, as K separate
  `train.Runner(config, data).fit(seed)` calls would (within float tolerance).
  Raises ConfigError naming the first field in which a member differs from the first
  member, when that field is not in SWEEPABLE_FIELDS.
  """
  return Sweep(members, data).fit(on_epoch, stop_requested)
