"""The one training program: a run's start, its epoch, its stop rule and its record.

Every run regjax trains -- a comparison's run, a member of a vmapped sweep, an
experiment's trajectory, a benchmark's epoch -- is this program:

  run = program.init(seed, opt_hparams, sample_x)          # from a seed
  run, metrics = program.epoch(run, seed, hparams, active, epoch, data, shared)
  stop = stop_after(row, ...)                               # on the host, per epoch
  record = make_record(...)                                 # once, at the end

`Program.epoch` is pure: train one epoch (regjax/trainer.py), measure the weights,
evaluate the validation split, update early stopping and, when the caller asks for them,
evaluate extra sets (an experiment's per-epoch test curve). A run that has stopped
(`active` False) comes back unchanged, bit for bit, so K runs can share one
`jax.vmap`-ed epoch and stop at different epochs. regjax/train.py runs it: K = 1 calls it
directly, K > 1 under `jax.vmap` (over a device mesh when there are several devices).

Data. A run reads its batches from a shared input pool through its own index arrays
(`RunData`), so runs with different training subsets, validation splits or label noise
(a replicate's own split, a bootstrap resample) share one program and one copy of the
inputs. With `data.standardize` a run's decoding also standardizes the features with its
own split's training statistics, which travel with its index arrays (`run_data`).
"""

import dataclasses
import math
from typing import Any, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from regjax import early_stopping
from regjax import optimizers
from regjax import trainer as trainer_lib
from regjax.data import Dataset
from regjax.early_stopping import EarlyStopping, EarlyStoppingState
from regjax.errors import ConfigError
from regjax.trainer import TrainState

STOP_PATIENCE, STOP_MAX_EPOCHS, STOP_NON_FINITE = 'patience', 'max_epochs', 'non_finite'
RAN_OUT = {'stop_reason': STOP_MAX_EPOCHS, 'diverged': False, 'diverged_epoch': None,
           'diverged_metric': None}
# Sources an extra evaluation set can read: the training pool or the test set.
SOURCES = ('pool', 'test')


@flax.struct.dataclass
class RunState:
  """A run between epochs (a pytree): its train state and its early-stopping state."""
  train: TrainState
  stop: EarlyStoppingState


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """An extra set evaluated in the epoch: metrics '<name>_loss', '<name>_accuracy'.

  source: 'pool' (rows of the training pool, e.g. a subset of the training split) or
  'test'. rows: (n,) int32 positions in the source, or None for all of it. labels: (n,)
  int32 labels to score against.
  """
  name: str
  source: str
  rows: np.ndarray | None
  labels: np.ndarray


def run_data(data: Dataset, sets: Sequence[EvalSet] = ()) -> dict[str, Any]:
  """The arrays of one run that a `Program.epoch` reads (numpy; see `Program`).

  {'train_rows' (n_train,), 'train_labels' (n_train,), 'val_rows' (n_val,),
   'val_labels' (n_val,), 'sets': {name: {'rows', 'labels'}}}, and with
  `data.standardize` 'shift' and 'scale' (one example's shape, float32): this split's
  training statistics (`Dataset.feature_shift/feature_scale`), per run because splits
  differ. The inputs themselves are shared by every run of a source (`shared_data`).
  """
  out = {'train_rows': data.train_idx, 'train_labels': data.y_train,
         'val_rows': data.val_idx, 'val_labels': data.y_val, 'sets': {}}
  if data.standardized:  # Absent otherwise: no extra array, no extra operation.
    out['shift'], out['scale'] = data.feature_shift, data.feature_scale
  for s in sets:
    if s.source not in SOURCES:
      raise ConfigError('eval set source', s.source, f'one of {", ".join(SOURCES)}')
    out['sets'][s.name] = {'labels': np.asarray(s.labels, np.int32)}
    if s.rows is not None:
      out['sets'][s.name]['rows'] = np.asarray(s.rows, np.int32)
  return out


def shared_data(data: Dataset, sets: Sequence[EvalSet] = ()) -> dict[str, Any]:
  """The inputs every run of `data`'s source shares: {'pool', 'table' (the uint8
  lookup, or None), and 'test' when an extra set reads the test inputs} (numpy, stored
  dtype; see `Dataset`). A split's standardization is per run (`run_data`).
  """
  out = {'pool': data.pool, 'table': data.decode_table}
  if any(s.source == 'test' for s in sets):
    out['test'] = data.test
  return out


class Program:
  """The pure per-run program of one config (see the module docstring).

  Attributes:
    config: the config whose static fields make the program (model, optimizer chain,
      batch size, early-stopping rule); array-valued fields come per run as `hparams`
      and optimizer hyperparameters.
    trainer: the `trainer.Trainer`.
    stopper: the `EarlyStopping` rule.
    opt_names: the optimizer hyperparameters a run sets at init (`opt_hparams` keys).
    eval_sets: names and sources of the extra per-epoch evaluation sets.
    n_train, n_val: training and validation examples of every run.
  """

  def __init__(self, config: ml_collections.ConfigDict, data: Dataset,
               penalty_terms: tuple[str, ...], include: tuple[str, ...] = (),
               eval_sets: Sequence[EvalSet] = (), batch_sharding: Any = None):
    """Builds (does not compile) the program of `config` for runs shaped like `data`.

    penalty_terms / include: the coupled penalties in the loss and the optimizer
    transforms kept at 0 (regjax/trainer.py `make_trainer`): those any run uses.
    """
    if data.num_val == 0 and config.early_stopping.enabled:
      raise ConfigError('data.validation_fraction', config.data.validation_fraction,
                        'early stopping needs a validation split: use a fraction > 0 or '
                        'set early_stopping.enabled=False')
    self.config = config
    self.trainer = trainer_lib.make_trainer(config, data.num_classes, data.num_train,
                                            penalty_terms, include, batch_sharding)
    self.stopper = EarlyStopping.from_config(config.early_stopping)
    self.opt_names = optimizers.hyperparam_names(config.optimizer, include)
    self.eval_sets = tuple((s.name, s.source) for s in eval_sets)
    self.n_train, self.n_val = data.num_train, data.num_val
    self._set_sizes = {s.name: len(s.labels) for s in eval_sets}

  def with_batch_sharding(self, batch_sharding: Any) -> 'Program':
    """A copy whose trainer lays training batches out with `batch_sharding`."""
    other = object.__new__(Program)
    other.__dict__.update(self.__dict__)
    other.trainer = dataclasses.replace(self.trainer, batch_sharding=batch_sharding)
    return other

  def hparams(self, config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
    """A run's coupled-penalty strengths {name: f32 scalar} (every registered one)."""
    return trainer_lib.penalty_hparams(config)

  def opt_hparams(self, config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """A run's optimizer hyperparameters {name: f32 scalar} for `init`."""
    optimizers.validate_optimizer_config(config.optimizer)
    return {k: np.float32(config.optimizer[k]) for k in self.opt_names}

  def init(self, seed: jax.Array, opt_hparams: Mapping[str, jax.Array],
           sample_x: jax.Array) -> RunState:
    """A run's state before epoch 0.

    seed: int scalar; `trainer.run_keys(seed)` splits it into init / shuffle / dropout.
    opt_hparams: this run's optimizer hyperparameters (`opt_hparams`), set into the
    optimizer state. sample_x: one decoded input batch (1, ...) that fixes the shapes.
    """
    init_key, _, _ = trainer_lib.run_keys(seed)
    state = self.trainer.init(init_key, sample_x)
    state = state.replace(opt_state=optimizers.set_hyperparams(state.opt_state,
                                                               **opt_hparams))
    return RunState(train=state, stop=self.stopper.init(state.params, state.batch_stats))

  def epoch(self, run: RunState, seed: jax.Array,
            hparams: Mapping[str, jax.Array], active: jax.Array, epoch: jax.Array,
            data: Mapping[str, Any], shared: Mapping[str, Any],
            evaluate_sets: jax.Array | bool = True) -> tuple[RunState, dict[str, jax.Array]]:
    """One epoch of one run; pure.

    Args:
      run: the run's state after the previous epoch.
      seed: its seed (int32); its keys are derived from it (`trainer.run_keys`), so no
        key is stored. hparams: its penalty strengths {name: f32}.
      active: bool scalar; False = the run has stopped, and it comes back unchanged.
      epoch: int32 scalar, 0-based.
      data: the run's own arrays (`run_data`); shared: the inputs (`shared_data`),
        device arrays.
      evaluate_sets: bool scalar; False skips the extra sets (their metrics are NaN).
    Returns:
      (run, metrics): metrics has the epoch's means of the step metrics ('train_loss',
      'train_penalty', 'train_accuracy'), the weight statistics ('weight_l1',
      'weight_l2', 'zero_fraction'), 'val_loss' / 'val_accuracy' with a validation
      split, and '<set>_loss' / '<set>_accuracy' per extra set.
    """
    t = self.trainer
    _, shuffle_key, dropout_key = trainer_lib.run_keys(seed)
    pool, table = shared['pool'], shared.get('table')
    shift, scale = data.get('shift'), data.get('scale')  # None without standardize.
    rows, labels = data['train_rows'], data['train_labels']
    state, metrics = t.epoch_from(
        run.train,
        lambda p: (trainer_lib.decode(pool[rows[p]], table, shift, scale), labels[p]),
        self.n_train, hparams, shuffle_key, dropout_key, epoch)
    metrics = dict(metrics, **t.weight_stats(state.params))
    if self.n_val:
      val = self._evaluate(state, shared, data, 'pool', data['val_rows'],
                           data['val_labels'], self.n_val)
      metrics.update(val_loss=val['loss'], val_accuracy=val['accuracy'])
    if self.eval_sets:
      def evaluate(state):
        out = {}
        for name, source in self.eval_sets:
          s = data['sets'][name]
          ev = self._evaluate(state, shared, data, source, s.get('rows'), s['labels'],
                              self._set_sizes[name])
          out[f'{name}_loss'], out[f'{name}_accuracy'] = ev['loss'], ev['accuracy']
        return out

      def skip(state):
        return {f'{name}_{m}': jnp.float32(jnp.nan) for name, _ in self.eval_sets
                for m in ('loss', 'accuracy')}

      # A traced switch, so evaluating every epoch or only some shares one program.
      metrics.update(jax.lax.cond(evaluate_sets, evaluate, skip, state))
    stop = self.stopper.update(run.stop, metrics, state.params, state.batch_stats)
    new = RunState(train=state, stop=stop)
    # A select rather than a branch: under vmap each run takes its own side.
    return jax.tree.map(lambda a, b: jnp.where(active, a, b), new, run), metrics

  def _evaluate(self, state: TrainState, shared: Mapping[str, Any],
                data: Mapping[str, Any], source: str, rows: jax.Array | None,
                labels: jax.Array, n: int) -> dict[str, jax.Array]:
    x, table = shared[source], shared.get('table')
    shift, scale = data.get('shift'), data.get('scale')
    if rows is None:
      chunk = lambda p: (trainer_lib.decode(x[p], table, shift, scale), labels[p])
    else:
      chunk = lambda p: (trainer_lib.decode(x[rows[p]], table, shift, scale), labels[p])
    return self.trainer.evaluate_from(state.params, state.batch_stats, chunk, n)


def stop_after(row: Mapping[str, float], stopped: bool, reason: int, stop_epoch: int,
               monitor: str) -> dict[str, Any] | None:
  """Why a run stops after the epoch of `row` (its metrics), or None if it goes on.

  stopped / reason / stop_epoch: its early-stopping state after that epoch. A
  non-finite training loss, or early stopping's non-finite monitored value, is a
  divergence. Returns the record's {'stop_reason', 'diverged', 'diverged_epoch',
  'diverged_metric'}.
  """
  if not math.isfinite(row['train_loss']):
    return {'stop_reason': STOP_NON_FINITE, 'diverged': True,
            'diverged_epoch': row['epoch'], 'diverged_metric': 'train_loss'}
  if bool(stopped):
    name = early_stopping.reason_name(int(reason))
    diverged = name == STOP_NON_FINITE
    return {'stop_reason': name, 'diverged': diverged,
            'diverged_epoch': int(stop_epoch) if diverged else None,
            'diverged_metric': monitor if diverged else None}
  return None


def make_record(seed: int, evals: Mapping[str, Mapping[str, float]], best_epoch: int,
                history: Sequence[Mapping[str, float]], stop: Mapping[str, Any],
                stats: Mapping[str, float], compile_seconds: float) -> dict[str, Any]:
  """A finished run's summary record (see regjax/report.py).

  evals: {'train', 'val' (absent without a validation split), 'test'} -> {'loss',
  'accuracy'} of the reported weights. stats: their weight statistics. history: the
  run's metrics rows. stop: `stop_after`'s dict (or RAN_OUT).
  """
  nan = float('nan')
  split = lambda name, what: evals[name][what] if name in evals else nan
  return {
      'seed': seed,
      'test_accuracy': split('test', 'accuracy'),
      'test_loss': split('test', 'loss'),
      'train_accuracy': split('train', 'accuracy'),
      'train_loss': split('train', 'loss'),
      'val_accuracy': split('val', 'accuracy'),
      'val_loss': split('val', 'loss'),
      'best_epoch': int(best_epoch),
      'stop_epoch': len(history) - 1,
      'epochs_run': len(history),
      'stop_reason': stop['stop_reason'],
      'zero_fraction': float(stats['zero_fraction']),
      'weight_l2': float(stats['weight_l2']),
      'weight_l1': float(stats['weight_l1']),
      'seconds_per_epoch': float(np.mean([r['seconds'] for r in history])),
      'compile_seconds': compile_seconds,
      'diverged': stop['diverged'],
      # 0-based epoch whose loss (or monitored metric) was first non-finite; else None.
      'diverged_epoch': stop['diverged_epoch'],
      'diverged_metric': stop['diverged_metric'],
  }
