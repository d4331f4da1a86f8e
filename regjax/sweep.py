"""Which runs can share one vmapped program, and whether a comparison should do so.

A run is a (config, seed) pair (with its data split). Runs may share a program when they
differ only in values that enter the training program as arrays (`sweepable_fields`):
the seed (keys), every registered regularizer's strength (regjax/regularizers.py) and
the optimizer's numeric hyperparameters. Everything else (model, data source and sizes,
batch size, epochs, early-stopping settings, optimizer name and schedule, masks) is the
program and must be equal. regjax/train.py trains such a group as one program.
"""

import json
from typing import Any, Sequence

import jax
import ml_collections

from regjax import regularizers
from regjax.errors import ConfigError

# Optimizer fields that are arrays in the program besides the regularizers' strengths.
_OPTIMIZER_ARRAYS = ('optimizer.learning_rate', 'optimizer.momentum', 'optimizer.b1',
                     'optimizer.b2')
# Top-level fields that describe the comparison, not one run.
_NOT_A_RUN = ('seeds', 'order', 'only', 'variants', 'tune', 'replicates')
# Data fields a run's own split may vary (its index arrays differ; the inputs are shared).
SPLIT_FIELDS = ('data.split_seed',)
VECTORIZE_MODES = ('auto', 'always', 'never')


def sweepable_fields() -> tuple[str, ...]:
  """Dotted config fields in which the runs of one program may differ."""
  return (('seed',) + _OPTIMIZER_ARRAYS + tuple(regularizers.fields()) + SPLIT_FIELDS)


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


def static_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fields that make the program: all but `sweepable_fields` and comparison fields."""
  sweepable = set(sweepable_fields())
  return {k: v for k, v in _flat(config).items()
          if k not in sweepable and k.split('.')[0] not in _NOT_A_RUN}


def static_signature(config: ml_collections.ConfigDict) -> str:
  """A string equal for two configs iff they differ at most in `sweepable_fields`."""
  return json.dumps(static_fields(config), sort_keys=True, default=repr)


def check_same_program(configs: Sequence[ml_collections.ConfigDict]) -> None:
  """Raises ConfigError naming the first field in which a config differs from the first
  one, when that field is not sweepable (so the runs cannot share one program)."""
  if not configs:
    raise ConfigError('runs', [], 'at least one run')
  first = static_fields(configs[0])
  for config in configs[1:]:
    other = static_fields(config)
    for key in sorted(set(first) | set(other)):
      if first.get(key) != other.get(key):
        raise ConfigError(key, other.get(key),
                          f'the same value as the first run ({first.get(key)!r}): runs of '
                          f'one program may differ only in {", ".join(sweepable_fields())}')


def can_vectorize(configs: Sequence[ml_collections.ConfigDict]) -> bool:
  """True when all configs differ only in `sweepable_fields`."""
  if not configs:
    return False
  first = static_signature(configs[0])
  return all(static_signature(c) == first for c in configs[1:])


def vectorizable_groups(configs: Sequence[ml_collections.ConfigDict]) -> list[list[int]]:
  """Partitions config indices into groups that can each run as one program.

  Groups keep the order of first appearance, and indices keep their order inside a
  group, e.g. [baseline, l2, dropout, wd] -> [[0, 1, 3], [2]].
  """
  groups: dict[str, list[int]] = {}
  for i, config in enumerate(configs):
    groups.setdefault(static_signature(config), []).append(i)
  return list(groups.values())


def should_vectorize(configs: Sequence[ml_collections.ConfigDict], mode: str = 'auto',
                     backend: str | None = None) -> bool:
  """Whether a comparison should train these configs as one vmapped program.

  'always' / 'never' decide; 'auto' says yes on an accelerator (backend 'gpu' / 'tpu';
  default: jax.default_backend()) when at least two configs can share a program. On a
  CPU 'auto' says no: there the small MLPs are already compute-bound, so a vmapped
  program is no faster per run-epoch (experiments/benchmark.py measures it). Raises
  ConfigError on an unknown mode.
  """
  if mode not in VECTORIZE_MODES:
    raise ConfigError('train.vectorize', mode, f'one of {", ".join(VECTORIZE_MODES)}')
  if mode == 'never' or len(configs) < 2 or not can_vectorize(configs):
    return False
  return mode == 'always' or (backend or jax.default_backend()) != 'cpu'
