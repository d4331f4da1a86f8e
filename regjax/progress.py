"""Progress of a whole comparison: a live bar in a terminal, sparse plain lines in a log.

A comparison trains `total_runs` runs of at most `max_epochs` epochs each. `Progress`
counts run-epochs over total_runs x max_epochs; a run that stops early (early stopping,
divergence, a variant with fewer epochs) completes its remaining epochs in the count when
it is done, so the count ends at the total and the time left is estimated from the
run-epochs trained so far.

  * stream is a terminal (`stream.isatty()`): one live tqdm bar with the epochs done,
    elapsed time, time left and speed, and 'runs k/N' in front; `write(line)` prints a
    line above the bar without breaking it, and each finished run gets one such line.
  * otherwise (CI logs, a file, a pipe): no bar, only plain lines through `log`: one per
    finished run, and between them at most one every `every_s` seconds of the clock
    with the epochs done, elapsed time and time left.

Usage (regjax/experiment.py is where it belongs; `log` is the comparison's line sink):

  progress = Progress(total_runs=len(runs), max_epochs=max(c.train.epochs for c in ...),
                      log=log)
  for run_label, row in ...:                 # RunGroup.fit(on_epoch=...)
    progress.on_epoch(run_label, row)        # row: the epoch's metrics ('epoch', ...)
  progress.on_done(run_label, record, 'test_acc 95.02%, stopped at 31 (patience)')
  progress.on_done(label, record, 'done earlier', trained=False)  # finished before a resume
  progress.write('  [l2 seed 0] checkpointed after 12 epochs')  # any other line
  progress.close()                           # or: with Progress(...) as progress: ...

`on_epoch` and `on_done` take any hashable run label (e.g. 'l2_1e-2 seed 3'). Progress
never changes what trains; it only writes to `stream` / `log`.
"""

import sys
import time
from typing import Any, Callable, Hashable, Mapping, TextIO

import tqdm

Log = Callable[[str], None]


def _interval(seconds: float) -> str:
  return tqdm.tqdm.format_interval(max(seconds, 0.0))


class Progress:
  """Progress of `total_runs` runs of at most `max_epochs` epochs (module docstring).

  Attributes:
    live: whether a live bar is shown (stream is a terminal, unless given).
    epochs_done: run-epochs counted so far (trained, or completed by finished runs).
    runs_done: runs finished.
  """

  def __init__(self, total_runs: int, max_epochs: int, stream: TextIO | None = None,
               log: Log | None = None, every_s: float = 60.0,
               live: bool | None = None, clock: Callable[[], float] = time.monotonic):
    """Starts the clock (and the bar, in a terminal).

    Args:
      total_runs: runs in the comparison (>= 0).
      max_epochs: the most epochs any run trains (>= 1); the count's total is
        total_runs * max_epochs.
      stream: where the bar and its lines go (default: sys.stderr).
      log: where plain lines go when there is no bar (default: printed to `stream`).
      every_s: least seconds between two plain progress lines (finished runs always
        get their line).
      live: force the bar on or off (default: `stream.isatty()`).
      clock: seconds, monotonic (a fake one in tests).
    """
    if total_runs < 0 or max_epochs < 1:
      raise ValueError(f'total_runs={total_runs}, max_epochs={max_epochs}: need >= 0 '
                       'runs of >= 1 epoch')
    self.stream = sys.stderr if stream is None else stream
    self.total_runs, self.max_epochs = total_runs, max_epochs
    self.total = total_runs * max_epochs
    self.every_s = every_s
    isatty = getattr(self.stream, 'isatty', None)
    self.live = bool(isatty and isatty()) if live is None else live
    self._log = log or (lambda line: print(line, file=self.stream, flush=True))
    self._clock = clock
    self._start = self._last_line = clock()
    self._counted: dict[Hashable, int] = {}  # Epochs counted per run.
    self._finished: set[Hashable] = set()
    self._earlier = 0  # Epochs of runs finished before this process: not in the speed.
    self.epochs_done = self.runs_done = 0
    self._bar = None
    if self.live:
      self._bar = tqdm.tqdm(total=self.total, file=self.stream, unit='epoch',
                            desc=self._runs_text(), dynamic_ncols=True, leave=True,
                            disable=False, smoothing=0.1)

  def _runs_text(self) -> str:
    return f'runs {self.runs_done}/{self.total_runs}'

  def _count(self, run_label: Hashable, epochs: int) -> int:
    """Adds up to `epochs` to the run's count, never past max_epochs; returns the added."""
    have = self._counted.get(run_label, 0)
    add = max(min(epochs, self.max_epochs - have), 0)
    self._counted[run_label] = have + add
    self.epochs_done += add
    return add

  def elapsed(self) -> float:
    """Seconds since the start."""
    return self._clock() - self._start

  def seconds_left(self) -> float | None:
    """Estimated seconds to the end, from the speed of the epochs trained so far
    (None before the first)."""
    trained = self.epochs_done - self._earlier
    if trained <= 0:
      return None
    return self.elapsed() / trained * (self.total - self.epochs_done)

  def _status(self) -> str:
    left = self.seconds_left()
    return (f'{self.epochs_done}/{self.total} epochs, {self._runs_text()}, '
            f'{_interval(self.elapsed())} elapsed'
            + ('' if left is None else f', about {_interval(left)} left'))

  def on_epoch(self, run_label: Hashable, row: Mapping[str, Any] | None = None) -> None:
    """A run trained one more epoch (row: its metrics; shown in the bar's postfix)."""
    if run_label in self._finished:
      return
    added = self._count(run_label, 1)
    if self._bar is not None:
      if added:
        self._bar.update(added)
      if row is not None and 'epoch' in row:
        self._bar.set_postfix_str(f"{run_label} epoch {row['epoch']}", refresh=False)
    elif self._clock() - self._last_line >= self.every_s:
      self._last_line = self._clock()
      self._log(f'progress: {self._status()}')

  def on_done(self, run_label: Hashable, record: Mapping[str, Any] | None,
              status_text: str, trained: bool = True) -> None:
    """A run finished: its remaining epochs count as done, and it gets a line.

    trained=False: it had finished before this process (a resumed comparison), so its
    epochs are counted without entering the speed.
    """
    del record  # The caller's status_text says what the record shows.
    if run_label in self._finished:
      return
    self._finished.add(run_label)
    added = self._count(run_label, self.max_epochs)
    if not trained:
      self._earlier += added
    self.runs_done += 1
    if self._bar is not None:
      if not trained:
        # tqdm's speed is (n - initial) / elapsed: earlier work is not this run's speed.
        self._bar.initial += added
      self._bar.update(added)
      self._bar.set_description_str(self._runs_text(), refresh=False)
      self.write(f'[{self.runs_done}/{self.total_runs}] {run_label}: {status_text}')
    else:
      self._last_line = self._clock()
      self._log(f'[{self.runs_done}/{self.total_runs}] {run_label}: {status_text} '
                f'({self._status()})')

  def write(self, line: str) -> None:
    """Prints a line: above the live bar (which stays whole), or through `log`."""
    if self._bar is not None:
      self._bar.write(line, file=self.stream)
    else:
      self._log(line)

  def close(self) -> None:
    """Ends the bar (leaving its last state on screen); plain mode writes nothing."""
    if self._bar is not None:
      self._bar.refresh()
      self._bar.close()
      self._bar = None

  def __enter__(self) -> 'Progress':
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()
