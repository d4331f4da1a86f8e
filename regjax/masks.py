"""Parameter paths and boolean masks that choose which parameters a regularizer touches.

A mask is a pytree of Python bools with the structure of the params tree (Flax Linen
nested dicts), so it works with `optax.masked` and with the penalties in
regjax/penalties.py. Leaves are selected by a regular expression searched in the
leaf's '/'-joined path, e.g. 'Dense_0/kernel' or 'BatchNorm_0/scale'.
"""

import re
from typing import Any, Callable, Sequence

import jax

from regjax.errors import ConfigError

PyTree = Any

# Kernels only: no biases and no BatchNorm scale/bias (the usual convention, e.g.
# Srivastava et al. 2014 and Loshchilov & Hutter 2019 decay only the weights).
DEFAULT_MASK = r'kernel$'


def _key_name(key: Any) -> str:
  """One keypath entry as text: a dict key, an attribute name or a sequence index."""
  if isinstance(key, jax.tree_util.DictKey):
    return str(key.key)
  if isinstance(key, jax.tree_util.GetAttrKey):
    return str(key.name)
  if isinstance(key, jax.tree_util.SequenceKey):
    return str(key.idx)
  if isinstance(key, jax.tree_util.FlattenedIndexKey):
    return str(key.key)
  return str(key)


def param_path(keypath: Sequence[Any]) -> str:
  """Returns a jax keypath as a '/'-joined name, e.g. 'Dense_0/kernel'."""
  return '/'.join(_key_name(k) for k in keypath)


def path_names(tree: PyTree) -> PyTree:
  """Returns a pytree like `tree` whose leaves are their own '/'-joined paths (str)."""
  return jax.tree_util.tree_map_with_path(lambda kp, _: param_path(kp), tree)


def compile_pattern(pattern: str, field: str = 'optimizer.mask') -> re.Pattern:
  """Compiles a mask regex; raises ConfigError(field, ...) if it is not a valid one."""
  if not isinstance(pattern, str):
    raise ConfigError(field, pattern, 'a regular expression string, e.g. r"kernel$"')
  try:
    return re.compile(pattern)
  except re.error as e:
    raise ConfigError(field, pattern, f'a valid Python regular expression ({e})') from e


def regex_mask(tree: PyTree, pattern: str = DEFAULT_MASK,
               field: str = 'optimizer.mask') -> PyTree:
  """Returns a pytree of bools like `tree`: True where re.search(pattern, path) matches.

  Args:
    tree: params pytree (any leaves; only the structure and paths are used).
    pattern: regex searched in each leaf's 'Module_0/name' path.
    field: config field named in the ConfigError if `pattern` is invalid.
  """
  return regex_mask_fn(pattern, field)(tree)


def regex_mask_fn(pattern: str = DEFAULT_MASK,
                  field: str = 'optimizer.mask') -> Callable[[PyTree], PyTree]:
  """Returns params -> regex_mask(params, pattern), validating the regex now.

  The callable form suits `optax.masked`, which builds the mask from whatever tree it
  is given at init/update time, so the optimizer need not know the params up front.
  """
  regex = compile_pattern(pattern, field)
  return lambda tree: jax.tree_util.tree_map_with_path(
      lambda kp, _: regex.search(param_path(kp)) is not None, tree)
