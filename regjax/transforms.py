"""Decoupled regularizers as optax GradientTransformations: L1 (proximal and
subgradient), per-unit max-norm, and a global-norm gradient clip that 0 turns off.

optax has none of the first three in this form (it only clips or projects the whole
tree, and has no soft-threshold step), so they are written here on optax's
`GradientTransformation` interface and masked with `optax.masked`.

Every strength may be a Python float, a traced jnp scalar (so a sweep can vmap over it)
or a schedule (callable of the int32 step count). A strength of 0 is an exact no-op:
the incoming updates are returned bit-for-bit (selected with jnp.where, never a Python
`if`, so a traced 0 is off too).

`mask` is a pytree of bools with the params' structure, a callable params -> such a
pytree (e.g. `regjax.masks.regex_mask_fn()`), or None for every leaf.
"""

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

PyTree = Any
Mask = Union[PyTree, Callable[[PyTree], PyTree], None]


class ScheduleCountState(NamedTuple):
  """Step count for a transform whose strength is a schedule (int32 scalar)."""
  count: jax.Array


def _init_state(value: optax.ScalarOrSchedule) -> optax.OptState:
  return (ScheduleCountState(jnp.zeros([], jnp.int32)) if callable(value)
          else optax.EmptyState())


def _current(value: optax.ScalarOrSchedule, state: optax.OptState) -> jax.Array:
  """Returns the strength for this step (a scalar; traced or not)."""
  return jnp.asarray(value(state.count) if callable(value) else value)


def _next_state(value: optax.ScalarOrSchedule, state: optax.OptState) -> optax.OptState:
  return (ScheduleCountState(optax.safe_increment(state.count)) if callable(value)
          else state)


def _maybe_masked(tx: optax.GradientTransformation, mask: Mask
                  ) -> optax.GradientTransformation:
  return tx if mask is None else optax.masked(tx, mask)


def _require_params(params: Optional[PyTree]) -> None:
  if params is None:
    raise ValueError('this transform needs params: call update(updates, state, params)')


def l1_proximal(threshold: optax.ScalarOrSchedule,
                mask: Mask = None) -> optax.GradientTransformation:
  """Soft-thresholds the weights the update would produce (proximal step of t*||w||_1).

  Place it AFTER the learning-rate scaling: `updates` are then the final parameter
  deltas. With p the params and u the updates, the new weights are
  new = sign(p + u) * max(|p + u| - t, 0) and the returned update is new - p. With
  t = lr * lambda this is proximal gradient descent (ISTA) on loss + lambda*||w||_1,
  which sets weights to exactly 0. optax has no such transform, hence this one.

  Args:
    threshold: t >= 0 in weight units (float, traced scalar or schedule); t <= 0 is off.
    mask: which leaves are thresholded (others pass through unchanged).
  """

  def update_fn(updates, state, params=None):
    _require_params(params)
    t = _current(threshold, state)

    def leaf(u, p):
      x = p + u
      shrunk = jnp.sign(x) * jnp.maximum(jnp.abs(x) - t, 0)
      # new - p, added back by optax.apply_updates, gives exactly 0 where new == 0.
      return jnp.where(t > 0, shrunk - p, u).astype(u.dtype)

    return jax.tree.map(leaf, updates, params), _next_state(threshold, state)

  tx = optax.GradientTransformation(lambda _: _init_state(threshold), update_fn)
  return _maybe_masked(tx, mask)


def l1_subgradient(strength: optax.ScalarOrSchedule,
                   mask: Mask = None) -> optax.GradientTransformation:
  """Adds strength * sign(w) to the gradient (the L1 subgradient, 0 at w == 0).

  Place it BEFORE the base optimizer, like a loss term. It is the naive comparison to
  `l1_proximal`: weights get small and oscillate around 0 but are almost never exactly 0.

  Args:
    strength: lambda >= 0 (float, traced scalar or schedule), in loss units per |w|.
    mask: which leaves are penalized.
  """

  def update_fn(updates, state, params=None):
    _require_params(params)
    s = _current(strength, state)
    new = jax.tree.map(lambda g, p: (g + s * jnp.sign(p)).astype(g.dtype),
                       updates, params)
    return new, _next_state(strength, state)

  tx = optax.GradientTransformation(lambda _: _init_state(strength), update_fn)
  return _maybe_masked(tx, mask)


def unit_norm_axes(ndim: int, unit_axis: int = -1) -> Optional[tuple[int, ...]]:
  """Returns the axes a unit's incoming-weight norm sums over (None = all axes).

  Flax kernels put the output units last: Dense (in, out) -> (0,), Conv
  (kh, kw, in, out) -> (0, 1, 2). A leaf with ndim < 2 (e.g. a bias, if the mask
  selects one) is treated as one unit: its whole norm.
  """
  if ndim < 2:
    return None
  keep = unit_axis % ndim
  return tuple(i for i in range(ndim) if i != keep)


def max_norm(max_value: optax.ScalarOrSchedule, mask: Mask = None,
             unit_axis: int = -1) -> optax.GradientTransformation:
  """Per-unit max-norm constraint (Srivastava et al. 2014), applied after the update.

  Place it LAST (after the learning-rate scaling). For each unit (index along
  `unit_axis`, the output axis of Flax kernels), the incoming weight vector of the new
  weights p + u is rescaled to Euclidean norm c if its norm exceeds c; units within c
  keep exactly the update u. optax only clips/projects the whole tree, hence this one.

  Args:
    max_value: c (float, traced scalar or schedule); c <= 0 means off, even traced, so a
      vmapped sweep can include 0.
    mask: which leaves are constrained.
    unit_axis: the axis indexing units; the norm runs over all other axes.
  """

  def update_fn(updates, state, params=None):
    _require_params(params)
    c = _current(max_value, state)

    def leaf(u, p):
      x = p + u
      norms = jnp.sqrt(jnp.sum(jnp.square(x), axis=unit_norm_axes(x.ndim, unit_axis),
                               keepdims=True))
      too_big = (c > 0) & (norms > c)
      scale = c / jnp.where(too_big, norms, 1.0)
      return jnp.where(too_big, x * scale - p, u).astype(u.dtype)

    return jax.tree.map(leaf, updates, params), _next_state(max_value, state)

  tx = optax.GradientTransformation(lambda _: _init_state(max_value), update_fn)
  return _maybe_masked(tx, mask)


def clip_global_norm(max_value: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  """`optax.clip_by_global_norm` where c <= 0 (even traced) means off.

  optax's own version would zero (or NaN) every update at c = 0, so a sweep that
  vmaps over c including 0 needs this switch. The norm is over the whole tree.
  """

  def update_fn(updates, state, params=None):
    del params
    c = _current(max_value, state)
    clipped, _ = optax.clip_by_global_norm(c).update(updates, optax.EmptyState())
    new = jax.tree.map(lambda u, v: jnp.where(c > 0, v, u), updates, clipped)
    return new, _next_state(max_value, state)

  return optax.GradientTransformation(lambda _: _init_state(max_value), update_fn)
