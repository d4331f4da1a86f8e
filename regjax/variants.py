"""A comparison is a base config plus named variants, each a few overridden fields.

In a config file:

  config.variants = variants.make(baseline={}, l2_1e-4={'penalty.l2': 1e-4})

and the runner trains `variant_config(config, name)` for each name. The first variant is
the baseline that differences are measured against.
"""

import copy
from typing import Any, Mapping

import ml_collections

from regjax.errors import ConfigError


def make(**named_overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Builds `config.variants` from {'name': {'dotted.field': value, ...}, ...}.

  Returns a ConfigDict name -> nested ConfigDict of overrides (so command-line flags
  like --config.variants.l2_1e-4.penalty.l2=3e-4 work too).
  """
  out = ml_collections.ConfigDict()
  for name, overrides in named_overrides.items():
    nested = ml_collections.ConfigDict()
    for dotted, value in overrides.items():
      node = nested
      *parents, leaf = dotted.split('.')
      for part in parents:
        if part not in node:
          node[part] = ml_collections.ConfigDict()
        node = node[part]
      node[leaf] = value
    out[name] = nested
  return out


def names(config: ml_collections.ConfigDict) -> list[str]:
  """The variants to run, in order: all of `config.variants`, or those in `config.only`."""
  all_names = list(config.variants.keys())
  if not all_names:
    raise ConfigError('variants', {}, 'a comparison needs at least one variant')
  if not config.get('only'):
    return all_names
  chosen = [n.strip() for n in config.only.split(',') if n.strip()]
  for n in chosen:
    if n not in all_names:
      raise ConfigError('only', n, f'unknown variant; allowed: {", ".join(all_names)}')
  return chosen


def _apply(target: ml_collections.ConfigDict, overrides: ml_collections.ConfigDict,
           prefix: str) -> None:
  for key, value in overrides.items():
    path = f'{prefix}.{key}'
    if key not in target or key in ('variants', 'only'):
      raise ConfigError(path, value, 'overrides a field that the schema does not have '
                        '(see regjax/schema.py)')
    if isinstance(value, ml_collections.ConfigDict):
      if not isinstance(target[key], ml_collections.ConfigDict):
        raise ConfigError(path, value.to_dict(), f'{key} is a value, not a section')
      _apply(target[key], value, path)
    else:
      try:
        target[key] = value
      except (TypeError, ValueError) as e:
        raise ConfigError(path, value, f'wrong type for this field ({e})') from None


def variant_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The full config of variant `name`: the base with that variant's overrides applied."""
  if name not in config.variants:
    raise ConfigError('only', name, f'unknown variant; allowed: {", ".join(config.variants)}')
  out = copy.deepcopy(config)
  with out.unlocked():
    del out['variants']
    _apply(out, config.variants[name], f'variants.{name}')
  return out
