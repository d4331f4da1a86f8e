"""Coupled L1/L2 penalties (terms added to the loss) and weight-norm diagnostics.

All functions are pure and jit-able; the strengths `l1`, `l2` may be Python floats or
traced jnp scalars, so a sweep can `jax.vmap` over them.

`mask` everywhere is one of: a pytree of bools with the params' structure (or a prefix
of it), e.g. from `regjax.masks.regex_mask`; a callable params -> such a pytree; or
None for every leaf. Python-bool leaves select statically (unselected leaves cost
nothing); array-valued bool leaves select with jnp.where.
"""

from typing import Any, Callable, Union

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
Mask = Union[PyTree, Callable[[PyTree], PyTree], None]
Scalar = Union[float, jax.Array]


def _selected(params: PyTree, mask: Mask) -> list[tuple[Any, jax.Array]]:
  """Returns (mask value, leaf) pairs for every params leaf under a mask leaf."""
  if mask is None:
    return [(True, leaf) for leaf in jax.tree.leaves(params)]
  if callable(mask):
    mask = mask(params)
  pairs = []
  # tree.map over (mask, params) accepts a mask that is a prefix of the params tree:
  # each mask leaf then governs every params leaf below it.
  jax.tree.map(lambda m, sub: pairs.extend((m, x) for x in jax.tree.leaves(sub)),
               mask, params)
  return pairs


def _masked_sum(params: PyTree, mask: Mask, leaf_fn: Callable[[jax.Array], jax.Array]
                ) -> jax.Array:
  """Returns sum over selected leaves of leaf_fn(leaf) (a float scalar)."""
  total = jnp.zeros((), jnp.float32)
  for m, leaf in _selected(params, mask):
    if isinstance(m, (bool, np.bool_)):
      if m:
        total = total + leaf_fn(leaf)
    else:
      total = total + jnp.where(m, leaf_fn(leaf), 0)
  return total


def l1_penalty(params: PyTree, mask: Mask = None) -> jax.Array:
  """Returns sum |w| over the masked leaves (float scalar, units of the weights)."""
  return _masked_sum(params, mask, lambda w: jnp.sum(jnp.abs(w)))


def l2_penalty(params: PyTree, mask: Mask = None) -> jax.Array:
  """Returns 0.5 * sum w^2 over the masked leaves (float scalar).

  Convention: the loss term is (lambda / 2) * ||w||^2 = lambda * l2_penalty, so its
  gradient is lambda * w, and coupled L2 with plain SGD equals decoupled weight decay
  of the same lambda (w <- w - lr * lambda * w). Keras `l2(k)` adds k * sum w^2, i.e.
  lambda = 2k here; PyTorch SGD `weight_decay=lambda` equals this lambda.
  """
  return 0.5 * _masked_sum(params, mask, lambda w: jnp.sum(jnp.square(w)))


def elastic_net(params: PyTree, mask: Mask, l1: Scalar, l2: Scalar) -> jax.Array:
  """Returns l1 * l1_penalty + l2 * l2_penalty (float scalar; l1, l2 may be traced)."""
  return l1 * l1_penalty(params, mask) + l2 * l2_penalty(params, mask)


def weight_norms(params: PyTree, mask: Mask = None) -> dict[str, jax.Array]:
  """Returns norm and sparsity diagnostics of the masked weights (float scalars).

  Keys: 'l1' = sum |w|; 'l2' = sqrt(sum w^2), the Euclidean norm of all masked weights
  as one vector; 'zero_fraction' = share of masked weights exactly == 0 (0 when the
  mask selects nothing).
  """
  count = _masked_sum(params, mask, lambda w: jnp.asarray(w.size, jnp.float32))
  zeros = _masked_sum(params, mask, lambda w: jnp.sum(w == 0).astype(jnp.float32))
  return dict(
      l1=l1_penalty(params, mask),
      l2=jnp.sqrt(2.0 * l2_penalty(params, mask)),
      zero_fraction=jnp.where(count > 0, zeros / jnp.maximum(count, 1.0), 0.0),
  )
