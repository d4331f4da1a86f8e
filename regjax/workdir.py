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
"""

import hashlib
import json
import os
import shutil
from typing import Any, Sequence

import flax.serialization
import numpy as np

from regjax import report

CHECKPOINTS_DIR = 'checkpoints'
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
