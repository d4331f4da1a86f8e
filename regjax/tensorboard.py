"""TensorBoard scalars of each (variant, seed) run, written with tensorboardX.

Layout: `run_logdir(workdir, variant, seed)` = `<workdir>/tensorboard/<variant>/seed_<seed>`,
so `tensorboard --logdir <workdir>/tensorboard` lists every run as `<variant>/seed_<seed>`.
Each metrics row {'epoch': int, 'train_loss': float, ...} (regjax/train.py) becomes one
scalar per numeric key, tagged with the key and at step = epoch; 'epoch' itself, bools,
strings, None and NaN are skipped; +-inf are written. TensorBoard stores float32.
metrics.jsonl stays the record; these files only feed TensorBoard.

Two writers, so that a run is never left with two points at one step:
  `TensorBoardLogger` streams rows while a run trains, for a live view. Its event file
    starts with a purge marker at its first row's epoch, so TensorBoard (and its
    `EventAccumulator`, whose `purge_orphaned_data` is on by default) hides every point
    at that epoch or later from earlier files of the same run: the epochs an
    interrupted run trains again after resuming replace the ones it lost.
  `write_rows` replaces the run's folder with a single event file of its whole history,
    e.g. when the run finishes (`Runner.fit` returns the restored rows too). Readers that
    do not honour purge markers then see one point per step as well.
Close a run's `TensorBoardLogger` before `write_rows` replaces its folder.

tensorboardX (pure Python and protobuf; neither TensorFlow nor torch) is imported only
when something is written, so importing this module costs nothing.
"""

import glob
import math
import numbers
import os
import shutil
import time
from typing import Any, Iterable, Mapping
import uuid

TENSORBOARD_DIR = 'tensorboard'
# Events wait at most this long in tensorboardX's queue before reaching the file.
_FLUSH_SECS = 10
# Queued events before `add_scalar` blocks: a few hundred epochs' worth of rows.
_MAX_QUEUE = 4096


def run_logdir(workdir: str, variant: str, seed: int, point: int | None = None) -> str:
  """The folder of one run's event files: <workdir>/tensorboard/<variant>/seed_<seed>,
  and /point_<j> for grid point j of a tuned variant (as the run's folder in runs/)."""
  # A variant name is a config key; keep path separators out of the folder name, as
  # regjax/workdir.py does.
  safe = variant.replace(os.sep, '_').replace('/', '_')
  out = os.path.join(workdir, TENSORBOARD_DIR, safe, f'seed_{seed}')
  return out if point is None else os.path.join(out, f'point_{point}')


def scalars(row: Mapping[str, Any]) -> dict[str, float]:
  """The scalars one metrics row contributes: tag -> value (float).

  Every key but 'epoch' whose value is a real number (Python or numpy; not bool) and not
  NaN, in the row's order.
  """
  out = {}
  for key, value in row.items():
    if key == 'epoch' or isinstance(value, bool) or not isinstance(value, numbers.Real):
      continue  # numpy's bool_ is not a numbers.Real; numpy ints and floats are.
    value = float(value)
    if not math.isnan(value):
      out[str(key)] = value
  return out


def _step(row: Mapping[str, Any]) -> int:
  """The row's 'epoch', the step of its scalars (an int >= 0)."""
  epoch = row.get('epoch')
  if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
    raise ValueError(f"metrics row epoch={epoch!r}: needs an 'epoch' int >= 0 (the step)")
  return int(epoch)


def _summary_writer(logdir: str, purge_step: int | None = None) -> Any:
  """A tensorboardX SummaryWriter with an event file of its own in `logdir`."""
  from tensorboardX import SummaryWriter  # Lazy: only writing needs it.
  # tensorboardX names files by the second (events.out.tfevents.<s>.<host>) and opens them
  # with 'wb', so two writers in one second would clobber each other; nanoseconds make
  # the name unique and keep files in the order they were started, which is the order in
  # which TensorBoard reads them and so applies purge markers.
  return SummaryWriter(logdir, purge_step=purge_step, max_queue=_MAX_QUEUE,
                       flush_secs=_FLUSH_SECS, filename_suffix=f'.{time.time_ns()}')


def _add(writer: Any, row: Mapping[str, Any]) -> None:
  step = _step(row)
  for tag, value in scalars(row).items():
    writer.add_scalar(tag, value, step)


def write_rows(logdir: str, rows: Iterable[Mapping[str, Any]]) -> None:
  """Replaces `logdir` with one event file holding the scalars of `rows`.

  The file is written into a fresh sibling folder, which then takes the place of
  `logdir` by two renames, so readers see the old history or the new one, never both
  (for an instant, neither). Leftovers of a write that crashed are removed first.

  Args:
    rows: one run's metrics rows, each with an 'epoch' int >= 0 (the step).
  Raises:
    ValueError: a row without a valid 'epoch' (checked before anything is written).
  """
  rows = list(rows)
  for row in rows:
    _step(row)
  logdir = os.path.normpath(logdir)
  parent, name = os.path.split(logdir)
  os.makedirs(parent or '.', exist_ok=True)
  for stale in glob.glob(os.path.join(glob.escape(parent), f'.{glob.escape(name)}.*-tmp')):
    shutil.rmtree(stale, ignore_errors=True)
  fresh = os.path.join(parent, f'.{name}.{uuid.uuid4().hex}.new-tmp')
  try:
    writer = _summary_writer(fresh)
    try:
      for row in rows:
        _add(writer, row)
    finally:
      writer.close()  # Drains tensorboardX's queue into the file.
    if os.path.lexists(logdir):
      old = os.path.join(parent, f'.{name}.{uuid.uuid4().hex}.old-tmp')
      os.rename(logdir, old)
      os.rename(fresh, logdir)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.rename(fresh, logdir)
  finally:
    shutil.rmtree(fresh, ignore_errors=True)  # Only still there if something failed.


class TensorBoardLogger:
  """Streams one run's metrics rows into its logdir while it trains.

  Use as a context manager, or call `close()`; closing writes out every queued event.
  Until then events reach the file within about 10 s. The event file starts at the first
  row: it hides (in TensorBoard) the points of earlier files of this run at that epoch
  or later, so a resumed run shows each epoch once (module docstring).

    with TensorBoardLogger(run_logdir(workdir, name, seed)) as tb:
      record, rows, _ = runner.fit(seed, on_epoch=tb.write_row)
    write_rows(run_logdir(workdir, name, seed), rows)  # One file, for any reader.
  """

  def __init__(self, logdir: str):
    self.logdir = logdir
    self._writer = None

  def write_row(self, row: Mapping[str, Any]) -> None:
    """Adds the scalars of one metrics row at step = row['epoch'] (see `scalars`)."""
    step = _step(row)
    if self._writer is None:
      # Opened at the first row, which is where a resumed run starts to train again.
      self._writer = _summary_writer(self.logdir, purge_step=step)
    _add(self._writer, row)

  def close(self) -> None:
    """Writes out every queued event and closes the file; writing again opens a new one."""
    if self._writer is not None:
      self._writer.close()
      self._writer = None

  def __enter__(self) -> 'TensorBoardLogger':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
