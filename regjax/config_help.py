"""A config as readable text, each field beside its comment in regjax/schema.py.

`--show_config` and `--help` of regjax.main print `format_config(config)`. The comments
are read from the source of `schema.default_config()`, so they are written once, where
the fields are defined:

  c.data.split_seed = 0    # Seeds the validation split, subsample and label noise (fixed
                           # across replicate seeds so variants see the same data).

gives {'data.split_seed': 'Seeds the validation split, ... see the same data).'}.
"""

import ast
import inspect
import io
import math
import textwrap
import tokenize
from typing import Any, Mapping

import ml_collections

from regjax import regularizers
from regjax import schema
from regjax import variants

# Top-level fields that describe the comparison rather than one training run.
_COMPARISON_FIELDS = ('variants', 'order', 'only')


def _attribute_path(node: ast.AST, root: str) -> str | None:
  """'data.name' for the target `c.data.name` (root 'c'); None for any other target."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if not parts or not isinstance(node, ast.Name) or node.id != root:
    return None
  return '.'.join(reversed(parts))


def _comments_by_line(source: str) -> dict[int, tuple[int, str, bool]]:
  """line -> (column, text after '#', whether the line holds nothing but the comment)."""
  out = {}
  for token in tokenize.generate_tokens(io.StringIO(source).readline):
    if token.type == tokenize.COMMENT:
      row, col = token.start
      alone = not token.line[:col].strip()
      out[row] = (col, token.string.lstrip('#').strip(), alone)
  return out


def parse_comments(source: str, function: str = 'default_config') -> dict[str, str]:
  """{dotted field: comment} from the assignments `c.a.b = ...` in `function` of `source`.

  A field's comment is the trailing `# ...` of its line(s), continued by the comment-only
  lines right below that are indented past the assignment. A field without one takes a
  comment-only line directly above it at its own indentation (e.g. `# Named variants:`).
  Every assigned field is a key, in the order of the source ('' where it has no comment).
  """
  tree = ast.parse(source)
  body = next(n for n in ast.walk(tree)
              if isinstance(n, ast.FunctionDef) and n.name == function)
  # The config is the name the function returns (`c` in regjax/schema.py).
  root = next((n.value.id for n in ast.walk(body)
               if isinstance(n, ast.Return) and isinstance(n.value, ast.Name)), 'c')
  comments = _comments_by_line(source)
  out = {}
  for stmt in ast.walk(body):
    if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1:
      continue
    field = _attribute_path(stmt.targets[0], root)
    if field is None:
      continue
    texts = [comments[line][1] for line in range(stmt.lineno, stmt.end_lineno + 1)
             if line in comments and not comments[line][2]]
    line = stmt.end_lineno + 1
    while texts and line in comments and comments[line][2] and (
        comments[line][0] > stmt.col_offset):
      texts.append(comments[line][1])
      line += 1
    above = comments.get(stmt.lineno - 1)
    if not texts and above and above[2] and above[0] == stmt.col_offset:
      texts.append(above[1])
    out[field] = ' '.join(texts)
  return out


def schema_comments(extra: Mapping[str, str] | None = None) -> dict[str, str]:
  """The comments of `schema.default_config()`'s fields, plus `extra` {field: comment}.

  The registered regularizers' fields (added to the schema in a loop) take their
  registration's doc (regjax/regularizers.py). `extra` is for other fields the source
  does not spell out as `c.a.b = value  # comment`; its entries win over parsed ones.
  """
  out = parse_comments(inspect.getsource(schema))
  out.update(regularizers.fields())
  out.update(extra or {})
  return out


def _value_text(value: Any) -> str:
  if isinstance(value, ml_collections.FieldReference):
    value = value.get()
  return repr(value)


def _leaves(node: ml_collections.ConfigDict, prefix: str, rank: Mapping[str, int]
            ) -> list[tuple[str, Any, bool]]:
  """[(dotted name, value, is a section)] in schema order, sections before their fields."""
  def order(key):
    return (rank.get(prefix + key, math.inf), key)

  out = []
  for key in sorted(node.keys(), key=order):
    if not prefix and key in _COMPARISON_FIELDS:
      continue
    value = node[key]
    if isinstance(value, ml_collections.ConfigDict):
      out.append((prefix + key, None, True))
      out.extend(_leaves(value, f'{prefix}{key}.', rank))
    else:
      out.append((prefix + key, value, False))
  return out


def _with_comment(left: str, comment: str, column: int, width: int) -> list[str]:
  """`left`, then `# comment` from `column` on, wrapped to `width` characters.

  A `left` that reaches the column gets its comment on the lines below it.
  """
  if not comment:
    return [left]
  lines = [f'# {line}' for line in textwrap.wrap(comment, max(width - column - 2, 30))]
  if len(left) + 2 > column:
    return [left] + [' ' * column + line for line in lines]
  return [left.ljust(column) + lines[0]] + [' ' * column + line for line in lines[1:]]


def variant_text(config: ml_collections.ConfigDict, name: str) -> str:
  """'NAME:FIELD=VALUE,...', the --variant form of one variant's overrides."""
  fields = ','.join(f'{field}={variants.value_text(value)}'
                    for field, value in variants.overrides(config, name).items())
  return f'{name}:{fields}'


def format_config(config: ml_collections.ConfigDict,
                  comments: Mapping[str, str] | None = None, width: int = 100) -> str:
  """The config as `field = value  # comment` lines, then its variants as overrides.

  Args:
    config: a full config (the base fields, `variants`, `order`, `only`).
    comments: {dotted field: comment}; default `schema_comments()`.
    width: wrap comments to this many characters per line.
  Returns:
    Text without a trailing newline: one line per field (a section's comment on a
    `[section]` line above its fields), a blank line between sections, then the
    variants in `config.order`, each as NAME:FIELD=VALUE,... (what --variant accepts).
  """
  comments = schema_comments() if comments is None else comments
  rank = {field: i for i, field in enumerate(comments)}
  leaves = _leaves(config, '', rank)
  column = min(max((len(f'{n} = {_value_text(v)}') for n, v, s in leaves if not s),
                   default=0) + 2, 44)
  lines = []
  for name, value, is_section in leaves:
    if is_section:
      lines.append('')
      lines.extend(_with_comment(f'[{name}]', comments.get(name, ''), column, width))
    else:
      lines.extend(_with_comment(f'{name} = {_value_text(value)}', comments.get(name, ''),
                                 column, width))
  lines.append('')
  lines.extend(_with_comment('[variants]', comments.get('variants', ''), column, width))
  lines.append('# As --variant=NAME:FIELD=VALUE,... would set them; the first is the baseline.')
  listed = [n.strip() for n in config.get('order', '').split(',') if n.strip()]
  names = [n for n in listed if n in config.variants]
  names += sorted(n for n in config.variants.keys() if n not in names)
  lines.extend(variant_text(config, n) for n in names)
  for field in ('order', 'only'):
    if field in config:
      lines.extend(_with_comment(f'{field} = {_value_text(config[field])}',
                                 comments.get(field, ''), column, width))
  return '\n'.join(lines).lstrip('\n')
