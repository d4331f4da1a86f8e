r"""Entrypoint: python -m regjax.main --config=configs/l2.py [--workdir=DIR] [--config.F=V].

Trains each variant of the config over its seeds with early stopping, prints the
comparison table, and writes config.json, metrics.jsonl, results.json, results.csv and
curves.png into the workdir (default: runs/<config name>-<time>).

  --config.FIELD=VALUE               change a field, also of a variant:
                                     --config.variants.l2_1e-2.penalty.l2=0.02
  --variant=NAME:FIELD=VALUE,...     add a variant (run last) or change one, e.g.
                                     --variant='l1_drop:penalty.l1=1e-4,model.dropout_rate=0.2'
  --show_config                      print the resolved config with each field's comment
                                     and exit; --config=FILE --help lists the fields too.

The work is done by `regjax.experiment.run`, which tests call directly; this file only
parses flags and turns bad input into one line on stderr with exit status 2.
"""

import glob
import keyword
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
from ml_collections.config_flags import config_path as ml_config_path

from regjax import config_help
from regjax import variants
from regjax.errors import ConfigError, find_config_error

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'A configs/*.py file, optionally with :options (e.g. :smoke).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Output folder; default runs/<config name>-<time>.')


def _default_cache_dir() -> str:
  """$XDG_CACHE_HOME/regjax/xla (the XDG convention), else ~/.cache/regjax/xla."""
  return os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.join('~', '.cache'),
                      'regjax', 'xla')


_CACHE = flags.DEFINE_string(
    'compilation_cache', _default_cache_dir(),
    "Folder for JAX's persistent compilation cache, so a repeated command loads its "
    "compiled programs instead of compiling again; '' turns it off.")
_CHECKPOINT_EVERY = flags.DEFINE_float(
    'checkpoint_every_s', 5.0,
    'Least seconds of training between two checkpoints of a run (0 = after every epoch '
    'whose previous save has finished; a negative value turns checkpoints off). Results '
    'do not depend on it.')
_VARIANT = flags.DEFINE_multi_string(
    'variant', [],
    "Adds a variant or changes one: NAME:FIELD=VALUE,... (repeatable), e.g. "
    "--variant='l1_drop:penalty.l1=1e-4,model.dropout_rate=0.2'. A new NAME runs after "
    "the config's variants (the first stays the baseline); an existing one keeps its "
    "other fields. Values are Python literals (1e-4, True, (256,256), 'adamw'); bare "
    'words are text. Applied after the --config.FIELD overrides.')
_SHOW_CONFIG = flags.DEFINE_bool(
    'show_config', False,
    'Print the resolved config (after --config.FIELD overrides and --variant), each field '
    'beside its comment from regjax/schema.py, and exit without training or writing.')
EXIT_BAD_INPUT = 2
_HELP_ARGS = ('--help', '-help', '--helpshort', '-?', '-h', '--helpfull')


def _fail(message: str) -> None:
  print(f'regjax: error: {" ".join(message.split())}', file=sys.stderr)
  sys.exit(EXIT_BAD_INPUT)


def _config_path(argv: list[str]) -> str | None:
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      return arg.split('=', 1)[1]
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _load_config(path: str):
  """The config file's ConfigDict without the overrides, or None if it does not load."""
  try:
    return flags.FLAGS['config'].parser.parse(path)
  except Exception:  # Reported, in one line, when absl parses the flag itself.
    return None


def _override_parts(name: str) -> list[str]:
  """The keys of an override path: 'variants.l2_1e-2.penalty.l2' (the text after --config.)
  or ml_collections' form "variants['l2_1e-2'].penalty.l2" (ConfigDict keys have no dots).
  """
  if '[' in name:
    try:
      return [str(p) for p in ml_config_path.split(name)]
    except ValueError:
      pass
  return name.split('.')


def _python_path(parts: list[str]) -> str:
  """['variants', 'l2_1e-2', 'penalty'] -> "variants['l2_1e-2'].penalty" (ml_collections')."""
  out = ''
  for part in parts:
    if part.isidentifier() and not keyword.iskeyword(part):
      out += f'.{part}' if out else part
    else:
      out += f'[{part!r}]'
  return out


def rewrite_overrides(argv: list[str]) -> list[str]:
  """argv with each --config.a.b-c.d=V written as --config.a['b-c'].d=V.

  ml_collections reads the path after --config. as a Python expression, in which a
  variant name such as l2_1e-2 is arithmetic; the bracket form is the one it accepts.
  Arguments whose path is already a Python expression are kept as they are.
  """
  out = []
  for arg in argv:
    prefix = next((p for p in ('--config.', '--noconfig.') if arg.startswith(p)), None)
    if prefix is None or '[' in arg.split('=', 1)[0]:
      out.append(arg)
      continue
    name, sep, value = arg[len(prefix):].partition('=')
    out.append(prefix + _python_path(name.split('.')) + sep + value)
  return out


def _unknown_override(argv: list[str], config) -> str | None:
  """Names the first --config.a.b override whose field does not exist, if any."""
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    parts = _override_parts(arg[len('--config.'):].split('=', 1)[0])
    node, shown = config, '.'.join(parts)
    for depth, part in enumerate(parts):
      if not hasattr(node, 'keys') or part not in node:
        here = '.'.join(parts[:depth])
        if depth == 1 and parts[0] == 'variants':
          names = [n.strip() for n in config.get('order', '').split(',') if n.strip()]
          return (f'--config.{shown}: no such variant; variants: {", ".join(names)} '
                  f'(add one with --variant={part}:FIELD=VALUE,...)')
        if depth >= 2 and parts[0] == 'variants':
          field = '.'.join(parts[2:])
          if (problem := variants.field_problem(field)) is not None:
            return f'--config.{shown}: {problem}'
          sets = ', '.join(variants.overrides(config, parts[1])) or 'no field'
          return (f'--config.{shown}: variant {parts[1]} does not set {field} (it sets '
                  f'{sets}); add it with --variant={parts[1]}:{field}=VALUE')
        fields = ', '.join(sorted(node.keys())) if hasattr(node, 'keys') else 'none'
        return f'--config.{shown}: no such field; fields of {here or "the config"}: {fields}'
      node = node[part]
  return None


def _missing_config_file(path: str) -> str:
  """The one-line message for a --config whose file does not exist."""
  file, sep, options = path.partition(':')
  for guess in (file + '.py', os.path.join('configs', file),
                os.path.join('configs', file + '.py')):
    if os.path.isfile(guess):
      return (f'--config={path!r}: no such config file; '
              f'did you mean --config={guess}{sep}{options}')
  here = sorted(glob.glob(os.path.join(os.path.dirname(file) or '.', '*.py')))
  return f'--config={path!r}: no such config file' + (f'; found: {", ".join(here)}'
                                                      if here else '')


def _resolved_config():
  """The --config flag's config with each --variant applied; bad input exits with 2."""
  config = _CONFIG.value
  try:
    for spec in _VARIANT.value:
      variants.apply_spec(config, spec)
  except ConfigError as e:
    _fail(str(e))
  return config


def _print_help(path: str | None, full: bool) -> None:
  """absl's --help (--helpfull), then the fields of the config when --config names one."""
  app.usage(shorthelp=not full, writeto_stdout=True)
  if path is None:
    print('\nAdd --config=FILE to --help, or run with --show_config, to list the fields of '
          'a config with their values and comments (regjax/schema.py).')
    return
  print(f'\nFields of --config={path} (set with --config.FIELD=VALUE; variants with '
        f'--config.variants.NAME.FIELD=VALUE or --variant):\n')
  print(config_help.format_config(_resolved_config()))


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with every bad-input case reduced to one line and exit status 2.

  Also rewrites --config.variants.NAME.FIELD=V for any variant name (see
  `rewrite_overrides`), and answers --help with the config's fields (exit status 0).
  """
  wants_help = any(arg in _HELP_ARGS for arg in argv[1:])
  full_help = '--helpfull' in argv[1:]
  argv = [argv[0]] + [arg for arg in argv[1:] if arg not in _HELP_ARGS]
  path = _config_path(argv)
  if path is None:
    if wants_help:
      _print_help(None, full_help)
      sys.exit(0)
    _fail('--config is required, e.g. --config=configs/l2.py')
  if not os.path.isfile(path.split(':', 1)[0]):
    _fail(_missing_config_file(path))
  written, argv = argv, rewrite_overrides(argv)
  # ml_collections reads the --config.* overrides from sys.argv, not from argv.
  saved, sys.argv = sys.argv, argv
  try:
    remaining = flags.FLAGS(argv)
  except Exception as e:  # Flag parsing reports through many exception types.
    config_error = find_config_error(e)
    if config_error is not None:
      _fail(str(config_error))
    config = None if isinstance(e, flags.Error) else _load_config(path)
    if config is not None:
      unknown = _unknown_override(argv, config)
      if unknown:
        _fail(unknown)
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    for mine, theirs in zip(argv, written):  # Name the flag as the user wrote it.
      message = message.replace(mine.split('=', 1)[0], theirs.split('=', 1)[0])
    _fail(message)
  finally:
    sys.argv = saved
  if wants_help:
    _print_help(path, full_help)
    sys.exit(0)
  return remaining


def _default_workdir(config_path: str) -> str:
  stem = os.path.splitext(os.path.basename(config_path.split(':')[0]))[0]
  return os.path.join('runs', f'{stem}-{time.strftime("%Y%m%d-%H%M%S")}')


def main(argv: list[str]) -> None:
  """Runs the comparison and prints its table; bad input exits with status 2."""
  if len(argv) > 1:
    _fail(f'unexpected arguments {argv[1:]}; fields are set with --config.FIELD=VALUE')
  config = _resolved_config()
  if _SHOW_CONFIG.value:
    print(config_help.format_config(config))
    return
  workdir = _WORKDIR.value or _default_workdir(_config_path(sys.argv))
  if os.path.isfile(workdir):  # Else os.makedirs says only "File exists".
    _fail(str(ConfigError('workdir', workdir, 'is a file; pass a folder (a new one, or '
                          'one that this command wrote before, to resume it)')))
  logging.set_verbosity(logging.WARNING)  # JAX's backend probing is not news.
  # Imported here so that --help and flag errors answer before JAX loads.
  from regjax import experiment
  from regjax import parallel
  parallel.maybe_initialize_distributed()  # Multi-host (TPU pod, SLURM): before any JAX work.
  if _CACHE.value:
    try:
      parallel.enable_compilation_cache(_CACHE.value)
    except OSError as e:
      _fail(f'--compilation_cache={_CACHE.value!r}: cannot be used ({e.strerror}); '
            "pass another folder or ''")
  try:
    every = _CHECKPOINT_EVERY.value
    result = experiment.run(config, workdir,
                            checkpoint_every_s=None if every < 0 else every,
                            name=_config_path(sys.argv) or '')
  except ConfigError as e:
    _fail(str(e))
  print(result['table'])
  names = ', '.join(sorted(os.path.basename(p) for p in result['paths'].values()))
  print(f'\nWrote config.json, metrics.jsonl, {names}, runs/ (each run\'s record and '
        f'reported weights) and tensorboard/ to {workdir}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
