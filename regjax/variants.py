"""A comparison is a base config plus named variants, each a few overridden fields.

In a config file:

  variants.set_variants(config, baseline={}, l2_1e-4={'penalty.l2': 1e-4})

and the runner trains `variant_config(config, name)` for each name in `config.order`. The
first variant is the baseline that differences are measured against.
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


def set_variants(config: ml_collections.ConfigDict,
                 **named_overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Sets `config.variants` (see `make`) and `config.order` (the given order); returns config."""
  config.variants = make(**named_overrides)
  config.order = ','.join(named_overrides)
  return config


def _split(text: str) -> list[str]:
  return [n.strip() for n in text.split(',') if n.strip()]


def names(config: ml_collections.ConfigDict) -> list[str]:
  """The variants to run, in order: all of `config.order`, or those in `config.only`."""
  all_names = _split(config.order)
  if not all_names:
    raise ConfigError('order', config.order, 'a comparison needs at least one variant')
  if sorted(all_names) != sorted(config.variants.keys()):
    raise ConfigError('order', config.order, 'must name each of config.variants once: '
                      f'{", ".join(sorted(config.variants.keys()))}')
  if not config.get('only'):
    return all_names
  chosen = _split(config.only)
  for n in chosen:
    if n not in all_names:
      raise ConfigError('only', n, f'unknown variant; allowed: {", ".join(all_names)}')
  return chosen


def _apply(target: ml_collections.ConfigDict, overrides: ml_collections.ConfigDict,
           prefix: str) -> None:
  for key, value in overrides.items():
    path = f'{prefix}.{key}'
    if key not in target or key in ('variants', 'order', 'only'):
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
