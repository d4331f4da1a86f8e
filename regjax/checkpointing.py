"""Checkpoints of a training program's runs, and preemption signals.

A group of runs trained as one program (one run, or K runs vmapped; regjax/train.py)
checkpoints into one folder, `<k>/` being the orbax checkpoint after k finished epochs.
A checkpoint holds, as arrays, everything the rest of training depends on (the runs'
train and early-stopping states), and as JSON what the driver needs besides (epoch,
which run sits in which lane of the program, each run's history so far, and the records
of runs already finished). Keys are not stored: they derive from the seeds, and the data
order of epoch e is `fold_in(shuffle_key, e)`. So training resumed from checkpoint k
computes exactly what an uninterrupted one computes from epoch k on.

Saving policy. One orbax save costs 50-200 ms on a small machine (measured on 2 cores:
~55-70 ms of CPU, 125-160 ms from the call to the commit, for 1-5 MB of state), against
epochs of 10-500 ms, so saving after every epoch would cost up to twice the training.
Saves are therefore asynchronous (a background thread writes while training goes on) and
timed: after an epoch, a checkpoint is started only if no save is still being written and
the seconds since the last one was started (or since training began) are at least
`interval_s` and at least the last save's duration (call to commit) over
`max_save_share`. So saves take at most `max_save_share` of the wall clock (3%) however
slow the disk or busy the cores, and at the default 5 s, on an idle machine, the interval
stays 5 s. A run shorter than its first interval never touches the disk: the folder and
orbax's manager are made when the first save is due (or at once when the folder exists,
to resume from it), so a comparison of hundreds of short runs writes no checkpoint at all.

Guarantees. The state when a stop is requested (SIGTERM, Ctrl-C) is always saved, so a
stop loses at most the epoch in flight. A SIGKILL loses at most the training since the
newest committed checkpoint: about max(`interval_s`, last save's duration /
`max_save_share`) seconds plus the save in flight, never a result: orbax commits a
checkpoint by renaming a finished temporary folder, and finished-run files are written
atomically (regjax/workdir.py). With `interval_s=0` the timing is off (the share rule
too): every epoch is saved whose previous save has finished; with `asynchronous=False`
as well, every epoch is saved.
"""

import dataclasses
import json
import os
import signal
import threading
import time
import types
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

PyTree = Any

# Two, so that a checkpoint is always complete while the next one is being written
# (orbax deletes the older one only after the newer one is committed).
MAX_TO_KEEP = 2
# Seconds of training between timed checkpoints: 1-3% overhead at the measured save cost.
DEFAULT_INTERVAL_S = 5.0
# The most of the wall clock that saves may take (module docstring): with the measured
# 150 ms per save this leaves the 5 s interval as it is, and stretches it when a save is
# slower (a busy machine, a slow disk, a larger state).
MAX_SAVE_SHARE = 0.03
_STATE, _META = 'state', 'meta'


# ----------------------------------------------------------------------------------------
# Checkpoints of a running group of runs.


@dataclasses.dataclass
class Restored:
  """A group's state after `epoch` finished epochs: `tree` (arrays, as saved) and `meta`
  (the JSON the driver saved with it)."""
  epoch: int
  tree: PyTree
  meta: dict[str, Any]


class Checkpoints:
  """The orbax `CheckpointManager` of one group of runs; step k = k finished epochs.

  Usage:
    with Checkpoints(directory) as ckpt:
      restored = ckpt.restore(template_of)      # None when there is none
      ckpt.save(k, tree, meta)                  # after epoch k - 1
  """

  def __init__(self, directory: str, interval_s: float = DEFAULT_INTERVAL_S,
               asynchronous: bool = True, max_to_keep: int = MAX_TO_KEEP,
               log: Callable[[str], None] | None = None,
               max_save_share: float = MAX_SAVE_SHARE):
    """Opens `directory` if it exists (leftovers of a save cut short are removed);
    otherwise nothing is created until the first save.

    Args:
      directory: this group's folder (regjax/workdir.py names it).
      interval_s: least seconds between two timed saves (module docstring); >= 0.
      asynchronous: write in a background thread; else `save` blocks until written.
      max_to_keep: newest checkpoints kept on disk.
      log: receives a line when training resumes, and for each unreadable checkpoint.
      max_save_share: in (0, 1]; timed saves take at most this share of the wall clock
        (module docstring). Not applied with interval_s=0.
    """
    if not 0 < max_save_share <= 1:
      raise ValueError(f'max_save_share must be in (0, 1], got {max_save_share}')
    self.directory = os.path.abspath(directory)
    self.interval_s = interval_s
    self.max_save_share = max_save_share
    self._asynchronous = asynchronous
    self._max_to_keep = max_to_keep
    self._log = log or (lambda line: None)
    self._manager: ocp.CheckpointManager | None = None
    self._saved: set[int] = set()
    self.saves = 0  # Saves started by this object (for measurements).
    # Duration of the newest committed save, call to commit (seconds); None before one.
    self.last_save_seconds: float | None = None
    self._save_started = 0.0
    if os.path.isdir(self.directory):
      self._open()
    self._last_save = time.monotonic()  # The start counts: no save in the first interval.

  def _open(self) -> ocp.CheckpointManager:
    """orbax's manager of the folder, made (and the folder created) on first use."""
    if self._manager is None:
      options = ocp.CheckpointManagerOptions(
          # `save` decides when to save and passes force=True; orbax keeps the newest.
          preservation_policy=checkpoint_managers.LatestN(self._max_to_keep),
          enable_async_checkpointing=self._asynchronous,
          async_options=(ocp.AsyncOptions(post_finalization_callback=self._committed)
                         if self._asynchronous else None),
          cleanup_tmp_directories=True,
          create=True,
      )
      self._manager = ocp.CheckpointManager(self.directory, options=options,
                                            item_names=(_STATE, _META))
      self._saved = set(self._manager.all_steps())
    return self._manager

  def _committed(self) -> None:
    # Called by orbax's background thread once a save's files are finalized.
    self.last_save_seconds = time.monotonic() - self._save_started

  @property
  def effective_interval_s(self) -> float:
    """Least seconds between timed saves now: `interval_s`, stretched so that saves
    of the last measured duration take at most `max_save_share` of the wall clock."""
    if self.interval_s == 0 or self.last_save_seconds is None:
      return self.interval_s
    return max(self.interval_s, self.last_save_seconds / self.max_save_share)

  def latest_epoch(self) -> int | None:
    """Finished epochs in the newest committed checkpoint, or None."""
    return None if self._manager is None else self._manager.latest_step()

  def save(self, epoch: int, tree: PyTree, meta: dict[str, Any],
           force: bool = False) -> bool:
    """Saves the state after `epoch` finished epochs, if due (see the module docstring).

    Args:
      epoch: finished epochs; the checkpoint's step. A step already saved is skipped.
      tree: the arrays (a pytree) to restore from.
      meta: JSON-able dict saved beside it (copied now: the caller may change its own).
      force: save now whatever the timing, waiting for a save still being written.
    Returns:
      Whether a save was started (it is committed once `wait` or `close` returns).
    """
    if epoch in self._saved:
      return False
    # Called after every epoch: the clock first, so that a save that is not due costs
    # one comparison.
    if not force and (time.monotonic() - self._last_save < self.effective_interval_s
                      or (self._manager is not None
                          and self._manager.is_saving_in_progress())):
      return False  # Never make training wait for the disk.
    manager = self._open()
    if epoch in self._saved:  # Opened just now: the folder had it already.
      return False
    meta = json.loads(json.dumps(dict(meta, epoch=epoch)))  # A deep copy, as saved.
    args = ocp.args.Composite(**{
        _STATE: ocp.args.StandardSave(tree),
        _META: ocp.args.JsonSave(meta),
    })
    if force:
      # orbax would wait for a save in flight too, but would log a warning about it.
      manager.wait_until_finished()
    self._save_started = time.monotonic()
    manager.save(epoch, args=args, force=True)
    if not self._asynchronous:
      self._committed()
    self._saved.add(epoch)
    self.saves += 1
    self._last_save = self._save_started
    return True

  def restore(self, template_of: Callable[[dict[str, Any]], PyTree]) -> Restored | None:
    """The newest readable checkpoint, or None.

    template_of(meta) gives the tree's structure (arrays or jax.ShapeDtypeStruct with
    the wanted shardings) for that checkpoint's meta. A checkpoint that cannot be read
    (damaged by hand, or from an incompatible version of the code) is logged and
    deleted, so that its epoch can be saved again, and the one before it is tried; with
    none left training starts afresh, which is equally exact.
    """
    if self._manager is None:  # No folder: nothing was saved.
      return None
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        meta = self._manager.restore(step, args=ocp.args.Composite(**{
            _META: ocp.args.JsonRestore()}))[_META]
        if meta['epoch'] != step:
          raise ValueError(f"its metadata says epoch {meta['epoch']}")
        template = jax.tree.map(ocp.utils.to_shape_dtype_struct, template_of(meta))
        tree = self._manager.restore(step, args=ocp.args.Composite(**{
            _STATE: ocp.args.StandardRestore(template)}))[_STATE]
      except Exception as e:  # pylint: disable=broad-except  # Any damage: try older.
        reason = (str(e).strip().splitlines() or [''])[0][:160]
        self._log(f'the checkpoint after {step} epochs is unreadable '
                  f'({type(e).__name__}: {reason}); deleted it')
        self._manager.delete(step)
        self._saved.discard(step)
        continue
      self._log(f'resuming from its checkpoint after {step} epochs')
      return Restored(epoch=step, tree=tree, meta=meta)
    return None

  def wait(self) -> None:
    """Blocks until every started save is committed to disk."""
    if self._manager is not None:
      self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases orbax's threads."""
    if self._manager is not None:
      self._manager.close()

  def __enter__(self) -> 'Checkpoints':
    return self

  def __exit__(self, *exc_info: Any) -> None:
    self.close()


# ----------------------------------------------------------------------------------------
# Preemption.


class Interrupted(Exception):
  """Raised by regjax/train.py when a stop was requested; its state is checkpointed.

  epochs_done: finished epochs, all saved in the run's checkpoint.
  """

  def __init__(self, epochs_done: int):
    super().__init__(f'stopped after {epochs_done} epochs on request')
    self.epochs_done = epochs_done


class Preempted(SystemExit):
  """The comparison stopped on a signal after checkpointing; exits with 128 + signal.

  A SystemExit, so that the command ends with status 130 (SIGINT) or 143 (SIGTERM) and
  no traceback; in-process callers can catch it. `message` is the one line to show.
  """

  def __init__(self, signum: int, message: str):
    super().__init__(128 + signum)
    self.signum = signum
    self.message = message


def signal_name(signum: int) -> str:
  """'SIGTERM', 'SIGINT', ... for a signal number."""
  try:
    return signal.Signals(signum).name
  except ValueError:
    return f'signal {signum}'


class PreemptionGuard:
  """Turns SIGTERM and SIGINT into a request that training honours between epochs.

  Inside `with PreemptionGuard() as guard:` the first such signal only sets
  `guard.signum`; the training loop then checkpoints and stops (an epoch is one compiled
  call and cannot be cut, so at most the current epoch is lost). The first signal also
  puts the previous handlers back, so a second Ctrl-C or SIGTERM acts at once. Outside
  the main thread, where Python cannot install handlers, the guard does nothing.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum: int | None = None
    self._previous: dict[int, Any] = {}

  @property
  def requested(self) -> bool:
    """Whether a stop signal has arrived."""
    return self.signum is not None

  def _handle(self, signum: int, frame: types.FrameType | None) -> None:
    del frame
    self.signum = signum
    self._restore()

  def _restore(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    self._previous.clear()

  def __enter__(self) -> 'PreemptionGuard':
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc_info: Any) -> None:
    self._restore()
