"""Early stopping as a pure, jit- and vmap-able state machine (Keras 3 semantics).

`EarlyStopping` holds the static settings; `EarlyStoppingState` is a pytree that a
jitted (and possibly vmapped) training loop carries from epoch to epoch. Epochs
are 0-based. One `update` per finished epoch, in Keras 3 `on_epoch_end` order:

  1. Epochs before `start_from_epoch` are only counted.
  2. A non-finite monitored value stops at once (regjax's addition: NaN weights
     never recover, and NaN compares False so Keras would keep training).
  3. `wait += 1`. An improvement over the best (by more than `min_delta`) records
     the best value, epoch and weights; it resets `wait` only if it also improves
     over `baseline` (when one is given), and never triggers a stop.
  4. Otherwise, once `wait >= patience` (and epoch > 0), stop.

A stopped state is frozen: later updates leave every field unchanged, so the
members of a vmapped sweep may stop at different epochs.
"""

import dataclasses
import math
from typing import Any, Mapping

import chex
import flax.struct
import jax
import jax.numpy as jnp

from regjax.errors import ConfigError

PyTree = Any

# Codes of EarlyStoppingState.reason.
RUNNING = 0
PATIENCE = 1
NON_FINITE = 2
_REASON_NAMES = {RUNNING: 'running', PATIENCE: 'patience', NON_FINITE: 'non_finite'}

# Monitor-name endings that mean "higher is better" under mode='auto'.
_MAX_SUFFIXES = ('accuracy', 'acc', 'auc')


def reason_name(code: int | jax.Array) -> str:
  """Names a stop reason code: 'running', 'patience' or 'non_finite'."""
  key = int(code)
  if key not in _REASON_NAMES:
    raise ValueError(f'unknown early-stopping reason code {key}')
  return _REASON_NAMES[key]


def resolve_mode(mode: str, monitor: str) -> str:
  """Resolves 'auto' to 'max' for *accuracy / *acc / *auc monitors, else 'min'."""
  if mode == 'auto':
    return 'max' if monitor.endswith(_MAX_SUFFIXES) else 'min'
  return mode


@flax.struct.dataclass
class EarlyStoppingState:
  """Per-run early-stopping state; every leaf is a scalar (per member under vmap).

  Attributes:
    epoch: int32, updates seen so far = the 0-based epoch of the next update
      (frozen once stopped, so it then equals the number of epochs trained).
    best: float32, best monitored value (+inf for min / -inf for max before any).
    best_epoch: int32, epoch of `best`; -1 before any.
    wait: int32, Keras' count of epochs since the last reset.
    stopped: bool, training should stop after the epoch just updated.
    stop_epoch: int32, epoch at which it stopped; -1 while running.
    reason: int32, RUNNING, PATIENCE or NON_FINITE.
    best_params: copy of the params at `best_epoch` (the init params before any);
      None when the settings never restore, to save the memory.
    best_batch_stats: same for the batch-norm statistics.
  """
  epoch: jax.Array
  best: jax.Array
  best_epoch: jax.Array
  wait: jax.Array
  stopped: jax.Array
  stop_epoch: jax.Array
  reason: jax.Array
  best_params: PyTree
  best_batch_stats: PyTree


def _is_int(x: Any) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def _is_finite_number(x: Any) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _copy_tree(tree: PyTree) -> PyTree:
  # A real copy, so that a training step that donates its params cannot delete the
  # buffers the state keeps.
  return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def _select_tree(pred: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
  """Static early-stopping settings (hashable, safe to close over in jit).

  Attributes:
    monitor: key of the per-epoch metrics dict to watch, e.g. 'val_loss'.
    mode: 'min' or 'max' ('auto' is resolved from `monitor` at construction).
    min_delta: >= 0; an improvement must beat the best by more than this (in the
      monitored metric's units).
    patience: >= 0 epochs without improvement before stopping.
    baseline: an improvement resets `wait` only if it also beats this; None = off.
    start_from_epoch: epochs 0 .. start_from_epoch - 1 are not monitored.
    restore_best: `best_variables` returns the best epoch's weights.
    enabled: False never stops for patience and never restores (but still tracks
      the best epoch and still stops on a non-finite value).
  """
  monitor: str = 'val_loss'
  mode: str = 'min'
  min_delta: float = 0.0
  patience: int = 10
  baseline: float | None = None
  start_from_epoch: int = 0
  restore_best: bool = True
  enabled: bool = True

  def __post_init__(self):
    if not isinstance(self.monitor, str) or not self.monitor:
      raise ConfigError('early_stopping.monitor', self.monitor,
                        'must be a non-empty metric name, e.g. val_loss')
    if self.mode not in ('min', 'max', 'auto'):
      raise ConfigError('early_stopping.mode', self.mode, 'must be min, max or auto')
    if not _is_int(self.patience) or self.patience < 0:
      raise ConfigError('early_stopping.patience', self.patience,
                        'must be an integer >= 0')
    if not _is_finite_number(self.min_delta) or self.min_delta < 0:
      raise ConfigError('early_stopping.min_delta', self.min_delta,
                        'must be a finite number >= 0')
    if self.baseline is not None and not _is_finite_number(self.baseline):
      raise ConfigError('early_stopping.baseline', self.baseline,
                        'must be a finite number or None')
    if not _is_int(self.start_from_epoch) or self.start_from_epoch < 0:
      raise ConfigError('early_stopping.start_from_epoch', self.start_from_epoch,
                        'must be an integer >= 0')
    # Frozen dataclass: resolving 'auto' here keeps `mode` always 'min' or 'max'.
    object.__setattr__(self, 'mode', resolve_mode(self.mode, self.monitor))

  @classmethod
  def from_config(cls, es_config: Any) -> 'EarlyStopping':
    """Builds from `config.early_stopping` (see regjax/schema.py); validates it."""
    return cls(
        monitor=es_config.monitor,
        mode=es_config.mode,
        min_delta=es_config.min_delta,
        patience=es_config.patience,
        baseline=es_config.baseline,
        start_from_epoch=es_config.start_from_epoch,
        restore_best=bool(es_config.restore_best),
        enabled=bool(es_config.enabled),
    )

  @property
  def _keeps_weights(self) -> bool:
    return self.enabled and self.restore_best

  def init(self, params: PyTree, batch_stats: PyTree) -> EarlyStoppingState:
    """Returns the state before epoch 0; keeps copies of the weights if restoring."""
    keep = self._keeps_weights
    return EarlyStoppingState(
        epoch=jnp.zeros((), jnp.int32),
        best=jnp.asarray(jnp.inf if self.mode == 'min' else -jnp.inf, jnp.float32),
        best_epoch=jnp.full((), -1, jnp.int32),
        wait=jnp.zeros((), jnp.int32),
        stopped=jnp.zeros((), jnp.bool_),
        stop_epoch=jnp.full((), -1, jnp.int32),
        reason=jnp.full((), RUNNING, jnp.int32),
        best_params=_copy_tree(params) if keep else None,
        best_batch_stats=_copy_tree(batch_stats) if keep else None,
    )

  def _improves(self, value: jax.Array, reference: jax.Array | float) -> jax.Array:
    # Keras' form: shift the value by min_delta against the direction of
    # improvement, then compare strictly.
    if self.mode == 'min':
      return value + self.min_delta < reference
    return value - self.min_delta > reference

  def update(self, state: EarlyStoppingState, metrics: Mapping[str, jax.Array],
             params: PyTree, batch_stats: PyTree) -> EarlyStoppingState:
    """Advances the state by the epoch just finished; pure and jit/vmap-able.

    Args:
      state: the state after the previous epoch.
      metrics: that epoch's metrics; metrics[monitor] is a scalar.
      params: the weights at the end of that epoch.
      batch_stats: the batch-norm statistics at the end of that epoch.

    Returns:
      The new state (equal to `state` if it had already stopped).

    Raises:
      ConfigError: at trace time, if `monitor` is not a key of `metrics` (allowed only
        when disabled, for a run without a validation split).
    """
    if self.monitor not in metrics and not self.enabled:
      # Disabled and nothing to watch (e.g. no validation split): only count the epoch.
      return state.replace(epoch=jnp.where(state.stopped, state.epoch, state.epoch + 1))
    if self.monitor not in metrics:
      raise ConfigError('early_stopping.monitor', self.monitor,
                        f'not among the metrics: {", ".join(sorted(metrics))}')
    value = jnp.asarray(metrics[self.monitor], jnp.float32)
    chex.assert_rank(value, 0)
    epoch = state.epoch
    running = ~state.stopped
    monitored = running & (epoch >= self.start_from_epoch)
    finite = jnp.isfinite(value)
    stop_non_finite = monitored & ~finite
    counted = monitored & finite

    improved = counted & self._improves(value, state.best)
    if self.baseline is None:
      resets = improved
    else:
      resets = improved & self._improves(value, self.baseline)
    wait = jnp.where(counted, state.wait + 1, state.wait)
    wait = jnp.where(resets, 0, wait)
    stop_patience = (counted & ~improved & (wait >= self.patience) & (epoch > 0)
                     & self.enabled)
    stops_now = stop_non_finite | stop_patience

    if self._keeps_weights:
      best_params = _select_tree(improved, params, state.best_params)
      best_batch_stats = _select_tree(improved, batch_stats, state.best_batch_stats)
    else:
      best_params, best_batch_stats = state.best_params, state.best_batch_stats
    return EarlyStoppingState(
        epoch=jnp.where(running, epoch + 1, epoch),
        best=jnp.where(improved, value, state.best),
        best_epoch=jnp.where(improved, epoch, state.best_epoch),
        wait=wait,
        stopped=state.stopped | stops_now,
        stop_epoch=jnp.where(stops_now, epoch, state.stop_epoch),
        reason=jnp.where(stop_non_finite, NON_FINITE,
                         jnp.where(stop_patience, PATIENCE, state.reason)),
        best_params=best_params,
        best_batch_stats=best_batch_stats,
    )

  def best_variables(self, state: EarlyStoppingState, params: PyTree,
                     batch_stats: PyTree) -> tuple[PyTree, PyTree]:
    """Returns the (params, batch_stats) to keep after training.

    The best epoch's copies if restoring and a best exists, else the given (last)
    ones. jit/vmap-able: the choice is a select on `state.best_epoch`.
    """
    if not self._keeps_weights:
      return params, batch_stats
    has_best = state.best_epoch >= 0
    return (_select_tree(has_best, state.best_params, params),
            _select_tree(has_best, state.best_batch_stats, batch_stats))
