"""Checkpoints of one (variant, seed) run, finished-run records, and preemption signals.

A workdir keeps, per run:

  checkpoints/<variant>/seed_<seed>/<k>/       orbax checkpoint after k finished epochs
  checkpoints/<variant>/seed_<seed>.json       the finished run: its record and history

A checkpoint holds everything the rest of the run depends on: the `TrainState` (step,
params, batch_stats, opt_state) and the `EarlyStoppingState` as arrays, and as JSON the
epoch count k (the data order of epoch e is `fold_in(shuffle_key, e)`, so k is the
data-order position), the step, the history rows so far and, once the run has stopped,
why. Keys are not stored: they derive from the seed. So a run resumed from checkpoint k
computes exactly what an uninterrupted run computes from epoch k on.

Saving policy. One orbax save costs 50-200 ms of CPU on a small machine, against epochs
of 10-100 ms for the default digits runs, so saving after every epoch would double their
cost. Saves are therefore asynchronous (a background thread writes while training goes
on) and timed: after an epoch, a checkpoint is started only if `interval_s` seconds have
passed since the last one (or since the run began) and no save is still being written.
The final state, and the state when a stop is requested (SIGTERM, Ctrl-C), are always
saved, so a stop loses at most the epoch in flight. A SIGKILL loses at most the last
`interval_s` seconds of training, never a result: orbax commits a checkpoint by renaming
a finished temporary folder, and finished-run files are written atomically. With
`interval_s=0` every epoch is saved whose previous save has finished; with
`asynchronous=False` as well, every epoch is saved.
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

from regjax import report

PyTree = Any

CHECKPOINTS_DIR = 'checkpoints'
# Two, so that a checkpoint is always complete while the next one is being written
# (orbax deletes the older one only after the newer one is committed).
MAX_TO_KEEP = 2
# Seconds of training between timed checkpoints: ~2% overhead at the measured save cost.
DEFAULT_INTERVAL_S = 5.0
_STATE, _META = 'state', 'meta'


def run_dir(workdir: str, variant: str, seed: int) -> str:
  """The orbax folder of one run: <workdir>/checkpoints/<variant>/seed_<seed>."""
  # A variant name is a config key; keep path separators out of the folder name.
  safe = variant.replace(os.sep, '_').replace('/', '_')
  return os.path.join(workdir, CHECKPOINTS_DIR, safe, f'seed_{seed}')


def has_checkpoints(workdir: str) -> bool:
  """Whether `workdir` holds any checkpoint or finished-run file."""
  root = os.path.join(workdir, CHECKPOINTS_DIR)
  return os.path.isdir(root) and any(files or dirs for _, dirs, files in os.walk(root))


# ----------------------------------------------------------------------------------------
# Finished runs.


def _result_path(directory: str) -> str:
  return directory.rstrip(os.sep) + '.json'


def write_result(directory: str, record: dict[str, Any],
                 history: list[dict[str, Any]]) -> None:
  """Stores a finished run's record and history rows next to its checkpoint folder.

  Atomic (write, then rename). NaN and inf are kept as JSON's NaN/Infinity tokens so that
  the record reads back bit for bit (Python writes floats with their shortest exact repr).
  """
  text = json.dumps({'record': record, 'history': history}, allow_nan=True)
  report.atomic_write_text(_result_path(directory), text + '\n')


def read_result(directory: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
  """(record, history) of a finished run, or None if it has not finished.

  An unreadable file counts as unfinished: the run is then finished again from its last
  checkpoint, which gives the same numbers.
  """
  try:
    with open(_result_path(directory), encoding='utf-8') as f:
      data = json.load(f)
    return data['record'], data['history']
  except (OSError, ValueError, KeyError, TypeError):
    return None


# ----------------------------------------------------------------------------------------
# Checkpoints of a running run.


@dataclasses.dataclass
class Restored:
  """A run's state after `epoch` finished epochs.

  state / es_state: the TrainState and EarlyStoppingState (arrays as saved).
  history: the `epoch` metrics rows so far. stop: None while the run goes on, else the
  dict that `Runner.fit` saved when it stopped ({'reason', 'diverged', ...}).
  """
  epoch: int
  state: PyTree
  es_state: PyTree
  history: list[dict[str, Any]]
  stop: dict[str, Any] | None


class RunCheckpoints:
  """The orbax `CheckpointManager` of one run; checkpoint step k = k finished epochs.

  Usage:
    with RunCheckpoints(run_dir(workdir, name, seed)) as ckpt:
      restored = ckpt.restore(state, es_state)   # None when there is none
      ckpt.save(k, state, es_state, history)     # after epoch k - 1
  """

  def __init__(self, directory: str, interval_s: float = DEFAULT_INTERVAL_S,
               asynchronous: bool = True, max_to_keep: int = MAX_TO_KEEP,
               log: Callable[[str], None] | None = None):
    """Opens (creating) `directory`; leftovers of a save cut short are removed.

    Args:
      directory: this run's folder (see `run_dir`).
      interval_s: least seconds between two timed saves (module docstring); >= 0.
      asynchronous: write in a background thread; else `save` blocks until written.
      max_to_keep: newest checkpoints kept on disk.
      log: receives a line when a run resumes, and for each unreadable checkpoint.
    """
    self.directory = os.path.abspath(directory)
    self.interval_s = interval_s
    self._log = log or (lambda line: None)
    options = ocp.CheckpointManagerOptions(
        # `save` decides when to save and passes force=True; orbax only keeps the newest.
        preservation_policy=checkpoint_managers.LatestN(max_to_keep),
        enable_async_checkpointing=asynchronous,
        cleanup_tmp_directories=True,
        create=True,
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=(_STATE, _META))
    self._saved = set(self._manager.all_steps())
    self._last_save = time.monotonic()  # The start counts: no save in the first interval.

  def latest_epoch(self) -> int | None:
    """Finished epochs in the newest committed checkpoint, or None."""
    return self._manager.latest_step()

  def save(self, epoch: int, state: PyTree, es_state: PyTree,
           history: list[dict[str, Any]], stop: dict[str, Any] | None = None,
           force: bool = False) -> bool:
    """Saves the state after `epoch` finished epochs, if due (see the module docstring).

    Args:
      epoch: finished epochs; the checkpoint's step. A step already saved is skipped.
      state, es_state: the TrainState and EarlyStoppingState after those epochs.
      history: their metrics rows (copied: the caller may append to its list).
      stop: why the run stopped, if it has.
      force: save now whatever the timing, waiting for a save still being written.
    Returns:
      Whether a save was started (it is committed once `wait` or `close` returns).
    """
    if epoch in self._saved:
      return False
    if not force and (time.monotonic() - self._last_save < self.interval_s
                      or self._manager.is_saving_in_progress()):
      return False  # Never make training wait for the disk.
    meta = {'epoch': epoch, 'step': int(jax.device_get(state.step)),
            'history': list(history), 'stop': stop}
    args = ocp.args.Composite(**{
        _STATE: ocp.args.StandardSave({'state': state, 'es_state': es_state}),
        _META: ocp.args.JsonSave(meta),
    })
    if force:
      # orbax would wait for a save in flight too, but would log a warning about it.
      self._manager.wait_until_finished()
    self._manager.save(epoch, args=args, force=True)
    self._saved.add(epoch)
    self._last_save = time.monotonic()
    return True

  def restore(self, state: PyTree, es_state: PyTree) -> Restored | None:
    """The newest readable checkpoint, shaped like the given fresh states; else None.

    A checkpoint that cannot be read (damaged by hand, or from an incompatible version
    of the code) is logged and deleted, so that its epoch can be saved again, and the
    one before it is tried; with none left the run starts afresh, which is equally exact.
    """
    template = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                            {'state': state, 'es_state': es_state})
    found = None
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        out = self._manager.restore(step, args=ocp.args.Composite(**{
            _STATE: ocp.args.StandardRestore(template),
            _META: ocp.args.JsonRestore(),
        }))
        meta = out[_META]
        if meta['epoch'] != step or len(meta['history']) != step:
          raise ValueError(f"its metadata says epoch {meta['epoch']}")
      except Exception as e:  # pylint: disable=broad-except  # Any damage: try older.
        reason = (str(e).strip().splitlines() or [''])[0][:160]
        self._log(f'the checkpoint after {step} epochs is unreadable '
                  f'({type(e).__name__}: {reason}); deleted it')
        self._manager.delete(step)
        self._saved.discard(step)
        continue
      found = Restored(epoch=step, state=out[_STATE]['state'],
                       es_state=out[_STATE]['es_state'], history=meta['history'],
                       stop=meta.get('stop'))
      self._log(f'resuming from its checkpoint after {step} epochs')
      break
    return found

  def keep_only_latest(self) -> None:
    """Waits for pending saves, then deletes every checkpoint but the newest.

    For finished runs: the newest holds the final weights; older ones are only useful
    to resume, which a finished run no longer needs.
    """
    self.wait()
    steps = sorted(self._manager.all_steps())
    for step in steps[:-1]:
      self._manager.delete(step)

  def wait(self) -> None:
    """Blocks until every started save is committed to disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases orbax's threads."""
    self._manager.close()

  def __enter__(self) -> 'RunCheckpoints':
    return self

  def __exit__(self, *exc_info: Any) -> None:
    self.close()


# ----------------------------------------------------------------------------------------
# Preemption.


class Interrupted(Exception):
  """Raised by `Runner.fit` when a stop was requested; its state is checkpointed.

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
