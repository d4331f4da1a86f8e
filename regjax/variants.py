"""A comparison is a base config plus named variants, each a few overridden fields.

In a config file:

  variants.set_variants(config, baseline={}, l2_1e-4={'penalty.l2': 1e-4},
                        l2={'tune.penalty.l2': (0.0, 1e-4, 1e-3, 1e-2)})

and the runner trains `variant_config(config, name)` for each name in `config.order`. The
first variant is the baseline that differences are measured against. A variant that
tunes (`tune.FIELD = (v1, v2, ...)`, any numeric or boolean field; several fields make a
grid of every combination) trains each point of `grid(config, name)` and reports, per
replicate, the point best on validation (regjax/experiment.py).

On the command line a variant's field is `--config.variants.l2_1e-2.penalty.l2=0.02`
(regjax.main rewrites names such as `l2_1e-2`, which Python would read as arithmetic,
into the `variants['l2_1e-2']` form ml_collections parses), and `apply_spec` adds or
changes a whole variant: `--variant='l1_drop:penalty.l1=1e-4,model.dropout_rate=0.2'`.
"""

import ast
import copy
import dataclasses
import itertools
import math
import re
from typing import Any, Mapping

import ml_collections

from regjax import schema
from regjax.errors import ConfigError

# Fields of the comparison itself, which no variant may override.
_NOT_OVERRIDABLE = ('variants', 'order', 'only', 'seeds', 'resample', 'select',
                    'equal_grids')
# A variant's section of tuned fields: tune.penalty.l2 = (0.0, 1e-3, ...).
TUNE = 'tune'
# A variant name goes into `order` (comma-separated), NAME:FIELD=VALUE and a ConfigDict
# key (which may not hold a dot).
_NAME = re.compile(r'\w[\w+-]*')


def make(**named_overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Builds `config.variants` from {'name': {'dotted.field': value, ...}, ...}.

  Returns a ConfigDict name -> nested ConfigDict of overrides (so command-line flags
  like --config.variants.l2_1e-4.penalty.l2=3e-4 can address each field).
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
    if key == TUNE and prefix.count('.') == 1:
      continue  # The grid, not a field: see `grid`.
    if key not in target or key in _NOT_OVERRIDABLE:
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


@dataclasses.dataclass(frozen=True)
class Grid:
  """A variant's tuning grid.

  fields: the tuned dotted fields, e.g. ('penalty.l2',); () for an untuned variant.
  points: every combination of their values, e.g. ({'penalty.l2': 0.0}, ...), the last
    field varying fastest; one empty point for an untuned variant.
  """
  fields: tuple[str, ...]
  points: tuple[dict[str, Any], ...]

  @property
  def tuned(self) -> bool:
    """Whether the variant tunes anything."""
    return bool(self.fields)

  def values(self, field: str) -> list[Any]:
    """The distinct values of `field` in the grid, in grid order."""
    return list(dict.fromkeys(p[field] for p in self.points))


def _tune_problem(field: str, values: Any) -> str | None:
  """What is wrong with tuning `field` over `values`, or None."""
  if (problem := field_problem(field)) is not None:
    return problem
  default = schema.default_config()
  for part in field.split('.'):
    default = default[part]
  if isinstance(default, bool):
    kind, ok = 'true or false', lambda v: isinstance(v, bool)
  elif isinstance(default, (int, float)):
    kind = 'integers' if isinstance(default, int) else 'numbers'
    ok = lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v) and (isinstance(default, float) or
                                             isinstance(v, int)))
  else:
    return f'{field} is not a number; only numeric or true/false fields can be tuned'
  if not isinstance(values, (tuple, list)) or not values:
    return 'a non-empty tuple of values to try, e.g. (0.0, 1e-4, 1e-3)'
  if not all(ok(v) for v in values):
    return f'a tuple of {kind} (the values of {field} to try)'
  if len(set(values)) != len(values):
    return 'each value once'
  return None


def grid(config: ml_collections.ConfigDict, name: str) -> Grid:
  """The tuning grid of variant `name` (see `Grid`).

  Raises ConfigError('variants.NAME.tune.FIELD', values, ...) for an empty or
  non-numeric grid or a field that does not exist; the values' ranges (e.g. a negative
  strength) are checked with each point's config, like any field.
  """
  tune = config.variants[name].get(TUNE)
  if tune is None:
    return Grid((), ({},))
  if not isinstance(tune, ml_collections.ConfigDict):
    raise ConfigError(f'variants.{name}.{TUNE}', tune,
                      'a section of fields, e.g. tune.penalty.l2 = (0.0, 1e-3)')
  found = flatten(tune)
  for field, values in found.items():
    if (problem := _tune_problem(field, values)) is not None:
      raise ConfigError(f'variants.{name}.{TUNE}.{field}', values, problem)
  if not found:
    return Grid((), ({},))
  fields = tuple(found)
  points = tuple(dict(zip(fields, combo))
                 for combo in itertools.product(*(tuple(found[f]) for f in fields)))
  return Grid(fields, points)


def log_grid(low: float, high: float, n: int, zero: bool = False) -> tuple[float, ...]:
  """n values from low to high evenly spaced in log, rounded to 2 significant digits;
  with zero=True, 0.0 (off) first. For config files: tune.penalty.l2 = log_grid(...)."""
  if not (0 < low < high and n >= 2):
    raise ConfigError('log_grid', (low, high, n), 'needs 0 < low < high and n >= 2')
  ratio = (high / low) ** (1 / (n - 1))
  values = tuple(float(f'{low * ratio ** i:.2g}') for i in range(n))
  return ((0.0,) if zero else ()) + values


def point_config(config: ml_collections.ConfigDict, point: Mapping[str, Any],
                 name: str) -> ml_collections.ConfigDict:
  """A copy of a variant's full config with a grid point's values set."""
  out = copy.deepcopy(config)
  for field, value in point.items():
    *parents, leaf = field.split('.')
    node = out
    for part in parents:
      node = node[part]
    try:
      node[leaf] = value
    except (TypeError, ValueError) as e:
      raise ConfigError(f'variants.{name}.{TUNE}.{field}', value,
                        f'wrong type for this field ({e})') from None
  return out


def flatten(node: ml_collections.ConfigDict) -> dict[str, Any]:
  """{'dotted.field': value} for every leaf under `node`, in its key order."""
  out = {}
  for key, value in node.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update({f'{key}.{k}': v for k, v in flatten(value).items()})
    else:
      out[key] = value
  return out


def overrides(config: ml_collections.ConfigDict, name: str) -> dict[str, Any]:
  """Variant `name`'s overrides as {'dotted.field': value}, in the variant's key order."""
  return flatten(config.variants[name])


def parse_value(text: str) -> Any:
  """A --variant value: a Python literal (1e-4, True, (256, 256), 'adamw'), else the text.

  A bare word stays text (`optimizer.name=adamw`, `penalty.mask=kernel$`); true/false in
  any case are booleans, and a list becomes a tuple (the schema's sequences are tuples).
  """
  text = text.strip()
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError, MemoryError, RecursionError):
    if text.lower() in ('true', 'false'):
      return text.lower() == 'true'
    return text
  return tuple(value) if isinstance(value, list) else value


def value_text(value: Any) -> str:
  """The inverse of `parse_value`: text that parses back to `value`."""
  if isinstance(value, str) and value and parse_value(value) == value and not (
      set(value) & set(',()[]{}\'" ')):
    return value  # A bare word reads better than a quoted one.
  return repr(value)


def _split_fields(text: str) -> list[str]:
  """Splits at the commas outside brackets and quotes: 'a=(1,2),b=x' -> ['a=(1,2)', 'b=x']."""
  parts, depth, quote, start = [], 0, '', 0
  for i, char in enumerate(text):
    if quote:
      quote = '' if char == quote else quote
    elif char in '\'"':
      quote = char
    elif char in '([{':
      depth += 1
    elif char in ')]}':
      depth -= 1
    elif char == ',' and depth == 0:
      parts.append(text[start:i])
      start = i + 1
  parts.append(text[start:])
  return [p.strip() for p in parts if p.strip()]


def field_problem(field: str) -> str | None:
  """What is wrong with `field` ('model.dropout_rate') as a variant's field, or None.

  A variant may set any value field of regjax/schema.py except the comparison's own
  (variants, order, only, seeds, resample, select, equal_grids), and tune one:
  tune.FIELD.
  """
  if field.startswith(TUNE + '.'):
    field = field[len(TUNE) + 1:]
  node = schema.default_config()
  parts = field.split('.')
  for depth, part in enumerate(parts):
    here = '.'.join(parts[:depth])
    if (not isinstance(node, ml_collections.ConfigDict) or part not in node
        or (depth == 0 and part in _NOT_OVERRIDABLE)):
      if isinstance(node, ml_collections.ConfigDict):
        keys = [k for k in node.keys() if depth or k not in _NOT_OVERRIDABLE]
        allowed = f'fields of {here or "the config"}: {", ".join(keys)}'
      else:
        allowed = f'{here} is a value, not a section'
      return f'no such field {field}; {allowed} (see regjax/schema.py)'
    node = node[part]
  if isinstance(node, ml_collections.ConfigDict):
    return (f'{field} is a section; set its fields: '
            f'{", ".join(f"{field}.{k}" for k in node.keys())}')
  return None


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
  """'NAME:FIELD=VALUE,...' -> (NAME, {'dotted.field': value}) for --variant.

  Values are read by `parse_value`; each field must be one of regjax/schema.py.
  Raises ConfigError('--variant', spec, ...) for a malformed spec or an unknown field.
  """
  name, _, fields_text = spec.partition(':')
  name = name.strip()
  if not _NAME.fullmatch(name):
    raise ConfigError('--variant', spec, 'expected NAME:FIELD=VALUE,... with a NAME of '
                      "letters, digits and _ + - (e.g. 'l1_drop:penalty.l1=1e-4')")
  fields = {}
  for item in _split_fields(fields_text):
    field, sep, value = item.partition('=')
    field = field.strip()
    if not sep or not field:
      raise ConfigError('--variant', spec, f'{item!r} is not FIELD=VALUE; expected '
                        "NAME:FIELD=VALUE,... (e.g. 'l1_drop:penalty.l1=1e-4')")
    if (problem := field_problem(field)) is not None:
      raise ConfigError('--variant', spec, problem)
    fields[field] = parse_value(value)
  return name, fields


def apply_spec(config: ml_collections.ConfigDict, spec: str) -> ml_collections.ConfigDict:
  """Adds or changes a variant as --variant=NAME:FIELD=VALUE,... says; returns config.

  A new NAME is appended to `config.order` (it runs last; the first variant stays the
  baseline); an existing one keeps its other overrides. Works on a locked config (the
  command line's). Raises ConfigError naming --variant for an unknown field or a value
  of the wrong type; ranges are checked when the comparison starts, as for any field.
  """
  name, fields = parse_spec(spec)
  new = name not in config.variants
  merged = {} if new else overrides(config, name)
  merged.update(fields)
  nested = make(**{name: merged})[name]
  try:
    schema.check_types(nested, schema.default_config())
    probe = copy.deepcopy(config)  # Checked on a copy, so a refused spec changes nothing.
    with probe.unlocked():
      probe.variants[name] = nested
    variant_config(probe, name)  # The overrides must also fit the config's own values.
  except ConfigError as e:
    raise ConfigError('--variant', spec, str(e)) from None
  with config.unlocked():
    config.variants[name] = nested
    if new:
      config.order = ','.join(_split(config.order) + [name])
  return config
