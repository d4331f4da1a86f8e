"""Typed `:arg` options of config files: `--config=configs/l2.py:smoke,dataset=mnist,seeds=5`.

Every `configs/*.py` accepts the common options below; a config may add its own. A bare
word sets a boolean option to True; `name=value` is parsed to the option's type.
"""

from typing import Any

import ml_collections

from regjax.errors import ConfigError

# name -> (default, help). The default's type is the option's type.
COMMON_OPTIONS: dict[str, tuple[Any, str]] = {
    'smoke': (False, 'shrink the run to seconds (tests use it)'),
    'dataset': ('', 'data.name to use instead of the config default, e.g. mnist'),
    'data_dir': ('', 'data.dir: a folder with the IDX .gz files'),
    'seeds': (0, 'number of seeds instead of the config default (0 = default)'),
}


_KIND_NAMES = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'text'}


def _parse_value(option: str, text: str, default: Any) -> Any:
  kind = type(default)
  try:
    if kind is bool:
      lowered = text.lower()
      if lowered not in ('true', 'false', '1', '0'):
        raise ValueError(text)
      return lowered in ('true', '1')
    return kind(text)
  except ValueError:
    raise ConfigError(f'config arg {option}', text, f'must be {_KIND_NAMES[kind]}') from None


def parse_arg(arg: str | None, extra: dict[str, tuple[Any, str]] | None = None
              ) -> ml_collections.ConfigDict:
  """Parses 'smoke,dataset=mnist,seeds=5' into a ConfigDict of typed options.

  Args:
    arg: the text after ':' in --config (None or '' for defaults).
    extra: options of one config beyond COMMON_OPTIONS, as name -> (default, help).
  Returns:
    A ConfigDict with every option set (defaults where not given).
  """
  spec = dict(COMMON_OPTIONS, **(extra or {}))
  opts = ml_collections.ConfigDict({name: default for name, (default, _) in spec.items()})
  for token in filter(None, (t.strip() for t in (arg or '').split(','))):
    name, sep, text = token.partition('=')
    name = name.strip()
    if name not in spec:
      allowed = ', '.join(f'{k} ({type(d).__name__})' for k, (d, _) in spec.items())
      raise ConfigError('config arg', token, f'unknown option; allowed: {allowed}')
    default = spec[name][0]
    if not sep:
      if type(default) is not bool:
        raise ConfigError(f'config arg {name}', token,
                          f'needs a value: {name}=<{_KIND_NAMES[type(default)]}>')
      opts[name] = True
    else:
      opts[name] = _parse_value(name, text.strip(), default)
  return opts


def apply_common(config: ml_collections.ConfigDict, opts: ml_collections.ConfigDict
                 ) -> ml_collections.ConfigDict:
  """Applies the common options to a full config (in place) and returns it.

  `smoke` keeps the comparison's structure (its variants) but trains 2 seeds for at most
  3 epochs on 300 examples with narrow layers, and tunes over at most 2 values per field
  (both ends): it checks the plumbing, not the science.
  """
  if opts.dataset:
    config.data.name = opts.dataset
  if opts.data_dir:
    config.data.dir = opts.data_dir
  if opts.seeds:
    if opts.seeds < 1:
      raise ConfigError('config arg seeds', opts.seeds, 'must be >= 1')
    config.seeds = opts.seeds
  if opts.smoke:
    config.seeds = 2
    config.train.epochs = min(config.train.epochs, 3)
    config.train.batch_size = min(config.train.batch_size, 32)
    config.data.train_size = 300
    config.data.validation_fraction = 0.1
    config.model.widths = tuple(min(w, 32) for w in config.model.widths)
    config.model.conv_features = tuple(min(f, 8) for f in config.model.conv_features)
    config.early_stopping.patience = min(config.early_stopping.patience, 1)
    for name in config.variants:  # Grids of at most 2 values: both ends.
      _shrink_grids(config.variants[name].get('tune'))
    config.equal_grids = False  # Shrinking one field of a 2-D grid unbalances them.
  return config


def _shrink_grids(node: Any) -> None:
  """Cuts every tuned field's values to (first, last), in place."""
  if not isinstance(node, ml_collections.ConfigDict):
    return
  for key, value in node.items():
    if isinstance(value, ml_collections.ConfigDict):
      _shrink_grids(value)
    elif isinstance(value, (tuple, list)) and len(value) > 2:
      node[key] = (value[0], value[-1])
