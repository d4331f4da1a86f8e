"""Where a comparison keeps its files, and the files of its finished runs.

  <workdir>/config.json                         the config (claims the workdir)
  <workdir>/metrics.jsonl, results.json, ...    the comparison's outputs (regjax/report.py)
  <workdir>/runs/<variant>/seed_<s>/result.json     a finished run: record and history
  <workdir>/runs/<variant>/seed_<s>/variables.msgpack
                                                the weights it reports (params and
                                                batch_stats), in flax's msgpack format
  <workdir>/checkpoints/...                     orbax checkpoints of runs still training;
                                                a group's folder is deleted when it ends

The weights file is a plain nested dict of arrays ({'params': ..., 'batch_stats': ...}),
readable without regjax: `flax.serialization.msgpack_restore(open(path, 'rb').read())`.

Reading a workdir back (regjax/evaluate.py, `regjax.load_run`). Every record, in
results.json and in a run's result.json, names 'variant', 'seed' and 'run_dir': the
folder, relative to the workdir, of the weights that record reports (in a tuned
comparison the chosen grid point's folder); readers follow 'run_dir', never the layout
above. A record's full config is `variants.variant_config(config, variant)` with the
record's 'chosen' ({dotted field: value}, if present) applied on top (`run_config`).
"""

import hashlib
import json
import os
import shutil
from typing import Any, Sequence

import flax.serialization
import ml_collections
import numpy as np

from regjax import report
from regjax import variants
from regjax.errors import ConfigError

CHECKPOINTS_DIR = 'checkpoints'
CONFIG_JSON = 'config.json'
RUNS_DIR = 'runs'
RESULT_FILE = 'result.json'
VARIABLES_FILE = 'variables.msgpack'


def _safe(name: str) -> str:
  # A variant name is a config key; keep path separators out of the folder name.
  return name.replace(os.sep, '_').replace('/', '_')


def run_dir(workdir: str, variant: str, seed: int) -> str:
  """The folder of one finished run: <workdir>/runs/<variant>/seed_<seed>."""
  return os.path.join(workdir, RUNS_DIR, _safe(variant), f'seed_{seed}')


def checkpoint_dir(workdir: str, run_dirs: Sequence[str]) -> str:
  """The orbax folder of a group of runs (their `run_dir` folders) trained as one program.

  One run: checkpoints/ plus its path under runs/ (e.g. checkpoints/l2/seed_0). Several:
  checkpoints/group-<hash of their paths>, so a different grouping (e.g. another
  `train.vectorize`) never reads it.
  """
  runs_root = os.path.join(workdir, RUNS_DIR)
  names = [os.path.relpath(d, runs_root) for d in run_dirs]
  if len(names) == 1:
    return os.path.join(workdir, CHECKPOINTS_DIR, names[0])
  digest = hashlib.sha1(json.dumps(names).encode()).hexdigest()[:12]
  return os.path.join(workdir, CHECKPOINTS_DIR, f'group-{digest}')


def remove_checkpoints(workdir: str, directory: str) -> None:
  """Deletes a finished group's checkpoint folder, and its parents up to
  <workdir>/checkpoints that it leaves empty."""
  shutil.rmtree(directory, ignore_errors=True)
  root = os.path.abspath(os.path.join(workdir, CHECKPOINTS_DIR))
  parent = os.path.dirname(os.path.abspath(directory))
  while parent.startswith(root):
    try:
      os.rmdir(parent)  # Only if empty.
    except OSError:
      break
    parent = os.path.dirname(parent)


def holds_results(workdir: str) -> bool:
  """Whether `workdir` holds any finished run or checkpoint."""
  for sub in (CHECKPOINTS_DIR, RUNS_DIR):
    root = os.path.join(workdir, sub)
    if os.path.isdir(root) and any(files or dirs for _, dirs, files in os.walk(root)):
      return True
  return False


def write_result(directory: str, record: dict[str, Any],
                 history: list[dict[str, Any]]) -> None:
  """Stores a finished run's record and history rows in its folder (atomically).

  NaN and inf are kept as JSON's NaN/Infinity tokens so that the record reads back bit
  for bit (Python writes floats with their shortest exact repr).
  """
  text = json.dumps({'record': record, 'history': history}, allow_nan=True)
  report.atomic_write_text(os.path.join(directory, RESULT_FILE), text + '\n')


def read_result(directory: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
  """(record, history) of a finished run, or None if it has not finished.

  An unreadable file counts as unfinished: the run is then trained again from its last
  checkpoint, which gives the same numbers.
  """
  try:
    with open(os.path.join(directory, RESULT_FILE), encoding='utf-8') as f:
      data = json.load(f)
    return data['record'], data['history']
  except (OSError, ValueError, KeyError, TypeError):
    return None


def save_variables(directory: str, variables: dict[str, Any]) -> str:
  """Writes {'params', 'batch_stats'} (arrays) to <directory>/variables.msgpack atomically."""
  state = flax.serialization.to_state_dict(
      {k: _host(v) for k, v in variables.items()})
  path = os.path.join(directory, VARIABLES_FILE)
  report.atomic_write_bytes(path, flax.serialization.msgpack_serialize(state))
  return path


def _host(tree: Any) -> Any:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.map(np.asarray, tree)


def load_variables(directory: str) -> dict[str, Any]:
  """The {'params', 'batch_stats'} a finished run reports, as numpy arrays."""
  with open(os.path.join(directory, VARIABLES_FILE), 'rb') as f:
    return flax.serialization.msgpack_restore(f.read())


# ------------------------------------------------------------------------ reading back


def _tuples(obj: Any) -> Any:
  """JSON lists back to the tuples the schema uses (model.widths, ...)."""
  if isinstance(obj, dict):
    return {k: _tuples(v) for k, v in obj.items()}
  if isinstance(obj, list):
    return tuple(_tuples(v) for v in obj)
  return obj


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir belongs to (its config.json), with tuples as in the schema.

  Raises ConfigError('workdir', ...) when `workdir` is not a folder or holds no
  readable config.json.
  """
  if not os.path.isdir(workdir):
    raise ConfigError('workdir', workdir, 'is not a folder; pass the --workdir of a '
                      'comparison (regjax.main wrote config.json and runs/ there)')
  path = os.path.join(workdir, CONFIG_JSON)
  try:
    with open(path, encoding='utf-8') as f:
      return ml_collections.ConfigDict(_tuples(json.load(f)))
  except (OSError, ValueError) as e:
    found = ', '.join(sorted(os.listdir(workdir))[:8]) or 'nothing'
    raise ConfigError('workdir', workdir, f'has no readable {CONFIG_JSON} ('
                      f'{type(e).__name__}), so it is no regjax workdir; it holds: '
                      f'{found}') from None


def finished_records(workdir: str) -> list[dict[str, Any]]:
  """The record of each finished (variant, seed) of a workdir, in table order.

  From results.json when the comparison has ended; before that, from the finished-run
  files (runs/**/result.json), where a (variant, seed) named by more than one file
  (the grid points of a tuned variant, whose choice results.json makes) is left out.
  Each record has 'variant', 'seed' and 'run_dir'; NaN comes back as NaN (results.json
  stores it as null).
  """
  def clean(record):
    return {k: float('nan') if k.endswith(('_accuracy', '_loss')) and v is None else v
            for k, v in record.items()}

  try:
    with open(os.path.join(workdir, report.RESULTS_JSON), encoding='utf-8') as f:
      return [clean(r) for r in json.load(f)['records']]
  except (OSError, ValueError, KeyError, TypeError):
    pass
  found: dict[tuple[str, int], list[dict[str, Any]]] = {}
  for folder, _, files in sorted(os.walk(os.path.join(workdir, RUNS_DIR))):
    if RESULT_FILE not in files or (result := read_result(folder)) is None:
      continue
    record = dict(result[0])
    if 'variant' not in record or 'seed' not in record:
      continue
    record.setdefault('run_dir', os.path.relpath(folder, workdir))
    found.setdefault((record['variant'], record['seed']), []).append(record)
  order = [n.strip() for n in str(read_config(workdir).get('order', '')).split(',')]
  rank = lambda key: (order.index(key[0]) if key[0] in order else len(order), key)
  return [clean(rs[0]) for key, rs in sorted(found.items(), key=lambda kv: rank(kv[0]))
          if len(rs) == 1]


def run_config(config: ml_collections.ConfigDict,
               record: dict[str, Any]) -> ml_collections.ConfigDict:
  """The full config of the run a record reports: its variant's config
  (`variants.variant_config`) with the record's 'chosen' {dotted field: value} on top,
  and its 'split_seed' (the data split it trained on: a replicate's own when the
  comparison resamples)."""
  out = variants.variant_config(config, record['variant'])
  if record.get('split_seed') is not None:
    out.data.split_seed = int(record['split_seed'])
  for field, value in (record.get('chosen') or {}).items():
    *parents, leaf = field.split('.')
    target = out
    for part in parents:
      target = target.get(part) if isinstance(target, ml_collections.ConfigDict) else None
    problem = None
    if not isinstance(target, ml_collections.ConfigDict) or leaf not in target:
      problem = 'is not a field of the config'
    else:
      try:
        target[leaf] = _tuples(value)
      except (TypeError, ValueError) as e:
        problem = f'does not fit the field ({e})'
    if problem:
      raise ConfigError(f'chosen.{field}', value, f"{problem} of {record['variant']} "
                        f"seed {record.get('seed')}")
  return out
