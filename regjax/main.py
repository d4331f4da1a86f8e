r"""Entrypoint: python -m regjax.main --config=configs/l2.py [--workdir=DIR] [--config.F=V].

Trains each variant of the config over its seeds with early stopping, prints the
comparison table, and writes config.json, metrics.jsonl, results.json, results.csv and
curves.png into the workdir (default: runs/<config name>-<time>). The work is done by
`regjax.experiment.run`, which tests call directly.
"""

import os
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'A configs/*.py file, optionally with :options (e.g. :smoke).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Output folder; default runs/<config name>-<time>.')


def _default_workdir(config_path: str) -> str:
  stem = os.path.splitext(os.path.basename(config_path.split(':')[0]))[0]
  return os.path.join('runs', f'{stem}-{time.strftime("%Y%m%d-%H%M%S")}')


def main(argv: list[str]) -> int:
  """Runs the comparison; bad input prints one line to stderr and exits with status 2."""
  if len(argv) > 1:
    print(f'regjax: error: unexpected arguments {argv[1:]}; use --config.FIELD=VALUE',
          file=sys.stderr)
    return 2
  # Imported here so that --help and flag errors answer before JAX loads.
  from regjax import experiment
  from regjax.errors import ConfigError
  workdir = _WORKDIR.value or _default_workdir(config_flags.get_config_filename(
      flags.FLAGS['config']))
  try:
    result = experiment.run(_CONFIG.value, workdir)
  except ConfigError as e:
    print(f'regjax: error: {e}', file=sys.stderr)
    return 2
  print(result['table'])
  print(f'\nWrote {", ".join(sorted(os.path.basename(p) for p in result["paths"].values()))} '
        f'to {workdir}')
  return 0


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  app.run(main)
