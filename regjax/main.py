r"""Entrypoint: python -m regjax.main --config=configs/l2.py [--workdir=DIR] [--config.F=V].

Trains each variant of the config over its seeds with early stopping, prints the
comparison table, and writes config.json, metrics.jsonl, results.json, results.csv and
curves.png into the workdir (default: runs/<config name>-<time>). The work is done by
`regjax.experiment.run`, which tests call directly; this file only parses flags and turns
bad input into one line on stderr with exit status 2.
"""

import glob
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

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
EXIT_BAD_INPUT = 2


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


def _unknown_override(argv: list[str], path: str) -> str | None:
  """Names the first --config.a.b override whose field does not exist, if any."""
  try:
    config = flags.FLAGS['config'].parser.parse(path)  # The file without the overrides.
  except Exception:  # Its own errors were reported already; nothing to add.
    return None
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    node, path = config, arg[len('--config.'):].split('=', 1)[0].split('.')
    for depth, part in enumerate(path):
      if not hasattr(node, 'keys') or part not in node:
        here = '.'.join(path[:depth]) or 'the config'
        fields = ', '.join(sorted(node.keys())) if hasattr(node, 'keys') else 'none'
        return f'--config.{".".join(path)}: no such field; fields of {here}: {fields}'
      node = node[part]
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with every bad-input case reduced to one line and exit status 2."""
  path = _config_path(argv)
  if path is None:
    _fail('--config is required, e.g. --config=configs/l2.py')
  file = path.split(':', 1)[0]
  if not os.path.isfile(file):
    here = sorted(glob.glob(os.path.join(os.path.dirname(file) or '.', '*.py')))
    _fail(f'--config={path!r}: no such config file'
          + (f'; found: {", ".join(here)}' if here else ''))
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # Flag parsing reports through many exception types.
    config_error = find_config_error(e)
    if config_error is not None:
      _fail(str(config_error))
    if not isinstance(e, flags.Error):
      unknown = _unknown_override(argv, path)
      if unknown:
        _fail(unknown)
    _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)


def _default_workdir(config_path: str) -> str:
  stem = os.path.splitext(os.path.basename(config_path.split(':')[0]))[0]
  return os.path.join('runs', f'{stem}-{time.strftime("%Y%m%d-%H%M%S")}')


def main(argv: list[str]) -> None:
  """Runs the comparison and prints its table; bad input exits with status 2."""
  if len(argv) > 1:
    _fail(f'unexpected arguments {argv[1:]}; fields are set with --config.FIELD=VALUE')
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
  workdir = _WORKDIR.value or _default_workdir(_config_path(sys.argv))
  try:
    every = _CHECKPOINT_EVERY.value
    result = experiment.run(_CONFIG.value, workdir,
                            checkpoint_every_s=None if every < 0 else every)
  except ConfigError as e:
    _fail(str(e))
  print(result['table'])
  names = ', '.join(sorted(os.path.basename(p) for p in result['paths'].values()))
  print(f'\nWrote config.json, metrics.jsonl, {names} to {workdir}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
