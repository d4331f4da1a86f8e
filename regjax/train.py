"""Training: a train state, pure train/eval steps, one `lax.scan` per epoch, and `fit`.

Design for sweeps: everything a sweep varies numerically enters as an array. Penalty
strengths travel in `hparams = {'l1': f32[], 'l2': f32[]}` (an argument of every step);
optimizer strengths (learning rate, weight decay, L1-proximal, max-norm) live in the
optimizer state through `optax.inject_hyperparams` (see regjax/optimizers.py). So the
whole run can later be `jax.vmap`-ed over seeds and strengths without recompiling.
A penalty that no run of a program uses (strength 0 everywhere) is left out of it
(`Trainer.penalty_terms`), which changes results only by float rounding.

Randomness: one `jax.random.key(seed)` split into three roles: `init` (parameters),
`shuffle` (epoch e's order is `permutation(fold_in(shuffle, e))`) and `dropout` (step t's
masks use `fold_in(dropout, t)`), so a run is reproducible and needs no RNG state.
Hence a checkpoint of the states after epoch k (regjax/checkpointing.py) is all that
`Runner.fit` needs to resume and end bit for bit as if never interrupted.
"""

import dataclasses
import math
import time
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from regjax import checkpointing
from regjax import masks
from regjax import penalties
from regjax.data import Dataset
from regjax import early_stopping
from regjax.early_stopping import EarlyStopping
from regjax.errors import ConfigError
from regjax.models import make_model
from regjax.optimizers import make_optimizer

Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (a pytree).

  step: int32 scalar, optimizer steps taken. params / batch_stats: the Linen variable
  collections (`batch_stats` is {} without BatchNorm). opt_state: the optax state.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def penalty_hparams(penalty_config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
  """Validated coupled-penalty strengths as float32 scalars: {'l1': .., 'l2': ..}."""
  out = {}
  for name in ('l1', 'l2'):
    value = penalty_config[name]
    if not isinstance(value, (int, float)) or not value >= 0 or not math.isfinite(value):
      raise ConfigError(f'penalty.{name}', value, 'a penalty strength must be finite and >= 0')
    out[name] = jnp.float32(value)
  return out


PENALTY_TERMS = ('l1', 'l2')


def active_penalties(*penalty_configs: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The PENALTY_TERMS whose strength is > 0 in any of the given `config.penalty`s."""
  return tuple(k for k in PENALTY_TERMS
               if any(penalty_hparams(c)[k] > 0 for c in penalty_configs))


def _accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.mean(jnp.argmax(logits, -1) == labels)


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
  """The static half of a run: model, optimizer and masks. Its methods are pure.

  Attributes:
    model: a Linen module called as `model.apply(vars, x, train=...)`.
    tx: the optax transformation.
    penalty_mask: regex on parameter paths that the coupled penalty and the weight
      diagnostics (norms, zero fraction) cover.
    batch_size: training batch size (the epoch's remainder is dropped).
    eval_batch_size: evaluation batch size (memory only; results do not depend on it).
    penalty_terms: which coupled penalties ('l1', 'l2') are in the loss. A term left out
      is not computed at all: at strength 0 it only added exact zeros to the loss and
      its gradient, yet cost ~20% of a batch-32 MLP step on a CPU (measured). Keep a term
      in whenever its strength may be > 0 in `hparams`, as a sweep's strengths are.
  """
  model: nn.Module
  tx: optax.GradientTransformation
  penalty_mask: str = r'kernel$'
  batch_size: int = 32
  eval_batch_size: int = 1024
  penalty_terms: tuple[str, ...] = PENALTY_TERMS

  def init(self, key: jax.Array, sample_x: jax.Array) -> TrainState:
    """Initializes params / batch_stats from one input example batch (1, ...)."""
    variables = self.model.init(key, sample_x, train=False)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get('batch_stats', {}),
                      opt_state=self.tx.init(params))

  def _mask(self, params):
    return masks.regex_mask(params, self.penalty_mask, field='penalty.mask')

  def weight_stats(self, params) -> Metrics:
    """{'weight_l1', 'weight_l2' (Euclidean norm), 'zero_fraction'} over masked weights."""
    norms = penalties.weight_norms(params, self._mask(params))
    return {'weight_l1': norms['l1'], 'weight_l2': norms['l2'],
            'zero_fraction': norms['zero_fraction']}

  def penalty(self, params, hparams: dict[str, jax.Array]) -> jax.Array:
    """The coupled penalty of `params` (f32 scalar): the sum over `penalty_terms` of
    hparams[term] * that term (l1: sum |w|; l2: 0.5 * sum w^2) on the masked weights."""
    total = jnp.zeros((), jnp.float32)
    if 'l1' in self.penalty_terms:
      total = total + hparams['l1'] * penalties.l1_penalty(params, self._mask(params))
    if 'l2' in self.penalty_terms:
      total = total + hparams['l2'] * penalties.l2_penalty(params, self._mask(params))
    return total

  def train_step(self, state: TrainState, x: jax.Array, y: jax.Array,
                 hparams: dict[str, jax.Array], dropout_key: jax.Array
                 ) -> tuple[TrainState, Metrics]:
    """One optimizer step on a batch x (B, ...), y (B,) int32.

    The dropout key of this step is `fold_in(dropout_key, state.step)`. Returns the new
    state and {'train_loss' (data loss only), 'train_penalty', 'train_accuracy'}.
    """
    step_key = jax.random.fold_in(dropout_key, state.step)

    def loss_fn(params):
      logits, updates = self.model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, x, train=True,
          rngs={'dropout': step_key}, mutable=['batch_stats'])
      data_loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      penalty = self.penalty(params, hparams)
      return data_loss + penalty, (data_loss, penalty, logits, updates)

    grads, (data_loss, penalty, logits, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
    opt_updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, opt_updates)
    new_state = TrainState(step=state.step + 1, params=params,
                           batch_stats=updates.get('batch_stats', state.batch_stats),
                           opt_state=opt_state)
    return new_state, {'train_loss': data_loss, 'train_penalty': penalty,
                       'train_accuracy': _accuracy(logits, y)}

  def train_epoch(self, state: TrainState, x: jax.Array, y: jax.Array,
                  hparams: dict[str, jax.Array], shuffle_key: jax.Array,
                  dropout_key: jax.Array, epoch: jax.Array) -> tuple[TrainState, Metrics]:
    """One epoch as one `lax.scan` over shuffled index batches (one dispatch per epoch).

    x: (N, ...) and y: (N,) stay on the device; the order is
    `permutation(fold_in(shuffle_key, epoch), N)`, cut into N // batch_size batches.
    Returns the new state and the epoch's mean of each step metric.
    """
    n = x.shape[0]
    steps = n // self.batch_size
    order = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n)
    batches = order[:steps * self.batch_size].reshape(steps, self.batch_size)

    def body(state, idx):
      return self.train_step(state, x[idx], y[idx], hparams, dropout_key)

    state, step_metrics = jax.lax.scan(body, state, batches)
    return state, jax.tree.map(jnp.mean, step_metrics)

  def evaluate(self, params, batch_stats, x: jax.Array, y: jax.Array) -> Metrics:
    """Inference-mode {'loss', 'accuracy'} over all of x (N, ...), y (N,), in batches.

    The tail is padded and masked out, so every example counts exactly once.
    """
    n = x.shape[0]
    bs = min(self.eval_batch_size, n)
    nb = -(-n // bs)
    pad = nb * bs - n
    xp = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape((nb, bs) + x.shape[1:])
    yp = jnp.pad(y, (0, pad)).reshape(nb, bs)
    valid = (jnp.arange(nb * bs) < n).reshape(nb, bs)
    variables = {'params': params, 'batch_stats': batch_stats}

    def body(totals, batch):
      xb, yb, vb = batch
      logits = self.model.apply(variables, xb, train=False)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
      correct = jnp.argmax(logits, -1) == yb
      return (totals[0] + jnp.sum(loss * vb), totals[1] + jnp.sum(correct * vb)), None

    (loss_sum, correct_sum), _ = jax.lax.scan(body, (jnp.float32(0), jnp.float32(0)),
                                              (xp, yp, valid))
    return {'loss': loss_sum / n, 'accuracy': correct_sum / n}

  def eval_sums(self, params, batch_stats, x: jax.Array, y: jax.Array,
                valid: jax.Array) -> jax.Array:
    """[sum of loss, number correct] over the examples of x (B, ...) where `valid` (B,)."""
    logits = self.model.apply({'params': params, 'batch_stats': batch_stats}, x,
                              train=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    correct = jnp.argmax(logits, -1) == y
    return jnp.stack([jnp.sum(loss * valid), jnp.sum(correct * valid)])


def make_trainer(config: ml_collections.ConfigDict, num_classes: int,
                 num_train: int, penalty_terms: tuple[str, ...] = PENALTY_TERMS) -> Trainer:
  """Builds the `Trainer` of `config` for a training set of `num_train` examples.

  penalty_terms: the coupled penalties in the loss (see `Trainer`); the default keeps
  both, for callers that pass strengths other than the config's at run time. A caller
  whose strengths are fixed by the config passes `active_penalties(config.penalty)`.
  """
  for term in penalty_terms:
    if term not in PENALTY_TERMS:
      raise ConfigError('penalty_terms', term, f'names from {", ".join(PENALTY_TERMS)}')
  bs, ebs, epochs = config.train.batch_size, config.train.eval_batch_size, config.train.epochs
  if not isinstance(epochs, int) or epochs < 1:
    raise ConfigError('train.epochs', epochs, 'must be an integer >= 1')
  if not isinstance(bs, int) or not 1 <= bs <= num_train:
    raise ConfigError('train.batch_size', bs,
                      f'must be an integer in [1, {num_train}] (the training set size)')
  if not isinstance(ebs, int) or ebs < 1:
    raise ConfigError('train.eval_batch_size', ebs, 'must be an integer >= 1')
  model = make_model(config.model, num_classes)
  tx = make_optimizer(config.optimizer, total_steps=(num_train // bs) * epochs)
  return Trainer(model=model, tx=tx, penalty_mask=config.penalty.mask,
                 batch_size=bs, eval_batch_size=ebs, penalty_terms=tuple(penalty_terms))


STOP_PATIENCE, STOP_MAX_EPOCHS, STOP_NON_FINITE = 'patience', 'max_epochs', 'non_finite'


def _stop_after(row: dict[str, float], es_state: early_stopping.EarlyStoppingState,
                monitor: str) -> dict[str, Any] | None:
  """Why training stops after the epoch of `row`, or None if it goes on.

  A dict {'reason', 'diverged', 'diverged_epoch', 'diverged_metric'}: a non-finite
  training loss, or early stopping's non-finite monitored value, is a divergence.
  """
  if not math.isfinite(row['train_loss']):
    return {'reason': STOP_NON_FINITE, 'diverged': True, 'diverged_epoch': row['epoch'],
            'diverged_metric': 'train_loss'}
  if bool(es_state.stopped):
    reason = early_stopping.reason_name(int(es_state.reason))
    diverged = reason == STOP_NON_FINITE
    return {'reason': reason, 'diverged': diverged,
            'diverged_epoch': int(es_state.stop_epoch) if diverged else None,
            'diverged_metric': monitor if diverged else None}
  return None


_RAN_OUT = {'reason': STOP_MAX_EPOCHS, 'diverged': False, 'diverged_epoch': None,
            'diverged_metric': None}


class Runner:
  """Trains one config on one dataset for any number of seeds, compiling once.

  Seeds only change keys, which are arguments of the compiled epoch, so every seed of a
  variant reuses one compiled program (`compile_seconds` is that one compilation,
  tracing included).
  """

  def __init__(self, config: ml_collections.ConfigDict, data: Dataset):
    """Validates `config` against `data` and builds (but does not yet compile) the run."""
    if len(data.x_val) == 0 and config.early_stopping.enabled:
      raise ConfigError('data.validation_fraction', config.data.validation_fraction,
                        'early stopping needs a validation split: use a fraction > 0 or '
                        'set early_stopping.enabled=False')
    self.config, self.data = config, data
    self.hparams = penalty_hparams(config.penalty)
    # Strengths are fixed per Runner, so a penalty at 0 is left out of the program.
    self.trainer = make_trainer(config, data.num_classes, len(data.x_train),
                                active_penalties(config.penalty))
    self.stopper = EarlyStopping.from_config(config.early_stopping)
    self._epoch_lowered = None
    self._epoch_compiled = None
    self._lower_seconds = 0.0
    self.compile_seconds = 0.0
    self._device = {name: jax.device_put(getattr(data, name)) for name in
                    ('x_train', 'y_train', 'x_val', 'y_val')}

  def _init(self, seed: int):
    init_key, shuffle_key, dropout_key = jax.random.split(jax.random.key(seed), 3)
    state = self.trainer.init(init_key, self._device['x_train'][:1])
    return state, self.stopper.init(state.params, state.batch_stats), (shuffle_key, dropout_key)

  def _epoch(self, state, es_state, keys, epoch, d):
    # The data arrays `d` are arguments, not constants closed over: XLA would otherwise
    # fold (and pad) whole datasets into the program, slowing compilation and doubling
    # memory.
    trainer = self.trainer
    state, train_metrics = trainer.train_epoch(state, d['x_train'], d['y_train'],
                                               self.hparams, keys[0], keys[1], epoch)
    metrics = dict(train_metrics, **trainer.weight_stats(state.params))
    if len(self.data.x_val):
      val = trainer.evaluate(state.params, state.batch_stats, d['x_val'], d['y_val'])
      metrics.update(val_loss=val['loss'], val_accuracy=val['accuracy'])
    es_state = self.stopper.update(es_state, metrics, state.params, state.batch_stats)
    return state, es_state, metrics

  def _lowered(self, state, es_state, keys):
    if self._epoch_lowered is None:
      t0 = time.perf_counter()
      self._epoch_lowered = jax.jit(self._epoch).lower(state, es_state, keys, jnp.int32(0),
                                                       self._device)
      self._lower_seconds = time.perf_counter() - t0
    return self._epoch_lowered

  def _compiled(self, state, es_state, keys):
    if self._epoch_compiled is None:
      # Ahead of time, so that compile seconds and per-epoch seconds are measured apart.
      lowered = self._lowered(state, es_state, keys)
      t0 = time.perf_counter()
      self._epoch_compiled = lowered.compile()
      self.compile_seconds = self._lower_seconds + time.perf_counter() - t0
      self._epoch_lowered = None  # Only the compiled program is needed from now on.
    return self._epoch_compiled

  def trace(self) -> None:
    """Traces the epoch program without compiling it (a fraction of a second).

    Some bad values only show while tracing (an early_stopping.monitor that is not a
    metric); calling this for every variant before training makes them fail first.
    The trace is kept, so `fit` does not trace again.
    """
    self._lowered(*self._init(self.config.seed))

  def fit(self, seed: int, on_epoch: Callable[[dict[str, float]], None] | None = None,
          checkpoints: checkpointing.RunCheckpoints | None = None,
          stop_requested: Callable[[], bool] | None = None
          ) -> tuple[dict[str, Any], list[dict[str, float]], dict[str, Any]]:
    """Trains with early stopping on the validation split; tests once on the kept weights.

    Args:
      seed: this replicate's seed: `jax.random.key(seed)` split into init/shuffle/dropout.
      on_epoch: called with each newly trained epoch's metrics row (floats).
      checkpoints: this run's checkpoints, or None. The run resumes from the newest one
        (epochs already done are not trained again, nor passed to `on_epoch`), saves as
        it goes (see regjax/checkpointing.py) and always saves its final state.
      stop_requested: polled before each epoch; when it returns True the state is
        checkpointed and `checkpointing.Interrupted` is raised.
    Returns:
      (record, history, variables): the run's summary record (see regjax/report.py), one
      metrics row per epoch (restored rows included), and the final {'params',
      'batch_stats'}. A resumed run returns exactly what an uninterrupted one does,
      wall-clock seconds aside.
    Raises:
      checkpointing.Interrupted: after `stop_requested()` was true and the state saved.
    """
    state, es_state, keys = self._init(seed)
    epoch_fn = self._compiled(state, es_state, keys)
    history, stop = [], None
    if checkpoints is not None:
      restored = checkpoints.restore(state, es_state)
      if restored is not None:
        state, es_state = restored.state, restored.es_state
        history, stop = list(restored.history), restored.stop
    epochs = self.config.train.epochs
    while stop is None and len(history) < epochs:
      if stop_requested is not None and stop_requested():
        if checkpoints is not None and history:
          checkpoints.save(len(history), state, es_state, history, force=True)
          checkpoints.wait()
        raise checkpointing.Interrupted(len(history))
      epoch = len(history)
      t0 = time.perf_counter()
      state, es_state, metrics = epoch_fn(state, es_state, keys, jnp.int32(epoch), self._device)
      metrics = jax.device_get(metrics)
      row = {'epoch': epoch, **{k: float(v) for k, v in metrics.items()},
             'seconds': time.perf_counter() - t0}
      history.append(row)
      if on_epoch is not None:
        on_epoch(row)
      stop = _stop_after(row, es_state, self.stopper.monitor)
      if stop is None and len(history) == epochs:
        stop = _RAN_OUT
      if checkpoints is not None:
        # The final state is always saved; the others as the saving policy allows.
        checkpoints.save(len(history), state, es_state, history, stop, force=stop is not None)
    stop = stop or _RAN_OUT

    params, batch_stats = self.stopper.best_variables(es_state, state.params,
                                                      state.batch_stats)
    data, nan = self.data, float('nan')
    final = {'train': self.evaluate(params, batch_stats, data.x_train, data.y_train)}
    if len(data.x_val):
      final['val'] = self.evaluate(params, batch_stats, data.x_val, data.y_val)
    # The test set is touched exactly once, here, on the weights that will be reported.
    final['test'] = self.evaluate(params, batch_stats, data.x_test, data.y_test)
    stats = jax.device_get(self.trainer.weight_stats(params))
    record = {
        'seed': seed,
        'test_accuracy': final['test']['accuracy'],
        'test_loss': final['test']['loss'],
        'train_accuracy': final['train']['accuracy'],
        'train_loss': final['train']['loss'],
        'val_accuracy': final['val']['accuracy'] if 'val' in final else nan,
        'val_loss': final['val']['loss'] if 'val' in final else nan,
        'best_epoch': int(es_state.best_epoch),
        'stop_epoch': len(history) - 1,
        'epochs_run': len(history),
        'stop_reason': stop['reason'],
        'zero_fraction': float(stats['zero_fraction']),
        'weight_l2': float(stats['weight_l2']),
        'weight_l1': float(stats['weight_l1']),
        'seconds_per_epoch': float(np.mean([r['seconds'] for r in history])),
        'compile_seconds': self.compile_seconds,
        'diverged': stop['diverged'],
        # 0-based epoch whose loss (or monitored metric) was first non-finite; else None.
        'diverged_epoch': stop['diverged_epoch'],
        'diverged_metric': stop['diverged_metric'],
    }
    return record, history, {'params': params, 'batch_stats': batch_stats}

  def evaluate(self, params, batch_stats, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Inference-mode {'loss', 'accuracy'} on x (N, ...), y (N,) as Python floats.

    Runs in fixed chunks of `train.eval_batch_size` examples (the last one padded), so
    the train, validation and test sets share one compiled program.
    """
    if not hasattr(self, '_eval_chunk'):
      self._eval_chunk = jax.jit(self.trainer.eval_sums)
    totals = chunked_sums(self._eval_chunk, params, batch_stats, x, y,
                          self.trainer.eval_batch_size)
    return {'loss': float(totals[0] / len(x)), 'accuracy': float(totals[1] / len(x))}


def chunked_sums(sums_fn: Callable[..., jax.Array], params, batch_stats, x: np.ndarray,
                 y: np.ndarray, chunk: int) -> np.ndarray:
  """Adds up `sums_fn(params, batch_stats, xb, yb, valid)` over fixed-size chunks of x, y.

  Every chunk has min(chunk, N) examples (the last one zero-padded and masked out by
  `valid`), so one compiled `sums_fn` serves sets of any size. Returns the float64 total
  of what sums_fn returns (e.g. (2,) or, vmapped over members, (K, 2)).
  """
  size = min(chunk, max(len(x), 1))
  totals = 0.0
  for start in range(0, len(x), size):
    xb, yb = x[start:start + size], y[start:start + size]
    valid = np.arange(size) < len(xb)
    pad = size - len(xb)
    xb = np.pad(xb, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
    yb = np.pad(yb, (0, pad))
    totals = totals + np.asarray(sums_fn(params, batch_stats, xb, yb, valid), np.float64)
  return np.asarray(totals)


def fit(config: ml_collections.ConfigDict, data: Dataset, seed: int,
        on_epoch: Callable[[dict[str, float]], None] | None = None
        ) -> tuple[dict[str, Any], list[dict[str, float]], dict[str, Any]]:
  """One run: `Runner(config, data).fit(seed, on_epoch)` (see `Runner.fit`)."""
  return Runner(config, data).fit(seed, on_epoch)
