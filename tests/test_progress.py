"""Progress: sparse plain lines in a log, a live bar with the right totals in a terminal."""

import io
import re

from absl.testing import absltest

from regjax.progress import Progress


class _Clock:
  """A fake monotonic clock: tests advance it by hand, so no assertion depends on time."""

  def __init__(self):
    self.now = 0.0

  def __call__(self) -> float:
    return self.now


class _Tty(io.StringIO):
  """A terminal as far as `isatty` tells."""

  def isatty(self) -> bool:
    return True


def _fake_comparison(progress: Progress, clock: _Clock, epochs: dict[str, int]) -> None:
  """Runs one after the other, each epoch taking one second of the fake clock."""
  for label, trained in epochs.items():
    for epoch in range(trained):
      clock.now += 1.0
      progress.on_epoch(label, {'epoch': epoch, 'train_loss': 0.5})
    stop = 'patience' if trained < progress.max_epochs else 'max_epochs'
    progress.on_done(label, {'epochs_run': trained}, f'stopped after {trained} ({stop})')


class PlainLinesTest(absltest.TestCase):

  def test_a_log_gets_one_line_per_run_and_one_per_minute_at_most(self):
    lines, clock = [], _Clock()
    progress = Progress(3, 100, stream=io.StringIO(), log=lines.append, every_s=60,
                        clock=clock)
    self.assertFalse(progress.live)
    # 240 trained epochs (run b stops early at 40) over 240 fake seconds: progress lines
    # at t=60 and t=200 (60 s after b's done line at 140), and 3 done lines.
    _fake_comparison(progress, clock, {'a seed 0': 100, 'b seed 0': 40, 'c seed 0': 100})
    progress.close()
    self.assertLen(lines, 5)
    # 60 epochs in 60 s, 240 to go: 240 s left.
    self.assertEqual(lines[0], 'progress: 60/300 epochs, runs 0/3, 01:00 elapsed, '
                     'about 04:00 left')
    self.assertTrue(lines[1].startswith('[1/3] a seed 0: stopped after 100 (max_epochs) '
                                        '(100/300 epochs, runs 1/3'))
    # b stopped after 40 epochs: its other 60 count as done.
    self.assertIn('[2/3] b seed 0: stopped after 40 (patience) (200/300 epochs', lines[2])
    self.assertTrue(lines[3].startswith('progress: 260/300 epochs'))
    self.assertIn('(300/300 epochs, runs 3/3, 04:00 elapsed, about 00:00 left)', lines[4])
    self.assertEqual(progress.epochs_done, 300)

  def test_default_log_prints_plain_lines_to_the_stream(self):
    stream, clock = io.StringIO(), _Clock()
    progress = Progress(2, 300, stream=stream, every_s=30, clock=clock)
    _fake_comparison(progress, clock, {'x': 300, 'y': 120})
    progress.write('a note')
    progress.close()
    text = stream.getvalue()
    self.assertNotIn('\r', text)  # No bar drawing in a log.
    lines = text.splitlines()
    # x: lines at t=30, 60, ..., 300 (10) and its done line at 300; y: t=330, ..., 420
    # (4) and its done line; the note.
    self.assertLen(lines, 10 + 1 + 4 + 1 + 1)
    self.assertEqual(lines[-1], 'a note')
    self.assertLen([l for l in lines if l.startswith('progress: ')], 14)

  def test_runs_finished_before_a_resume_count_but_not_in_the_speed(self):
    lines, clock = [], _Clock()
    progress = Progress(3, 10, log=lines.append, every_s=1e9, clock=clock)
    progress.on_done('old seed 0', None, 'done earlier', trained=False)
    self.assertEqual(progress.epochs_done, 10)
    self.assertIsNone(progress.seconds_left())  # Nothing trained yet: no speed.
    clock.now = 2.0
    progress.on_epoch('new seed 1', {'epoch': 0})
    self.assertEqual(progress.seconds_left(), 2.0 / 1 * (30 - 11))
    for _ in range(15):  # Counts stop at max_epochs, and after its done line.
      progress.on_epoch('new seed 1')
    self.assertEqual(progress.epochs_done, 20)
    progress.on_done('new seed 1', None, 'ok')
    progress.on_epoch('new seed 1')
    progress.on_done('new seed 1', None, 'ok again')
    self.assertEqual((progress.epochs_done, progress.runs_done), (20, 2))
    self.assertEqual([l.split(':')[0] for l in lines], ['[1/3] old seed 0', '[2/3] new seed 1'])


class LiveBarTest(absltest.TestCase):

  def test_a_terminal_gets_a_bar_over_runs_times_epochs(self):
    tty, clock = _Tty(), _Clock()
    lines = []
    progress = Progress(2, 50, stream=tty, log=lines.append, clock=clock)
    self.assertTrue(progress.live)
    _fake_comparison(progress, clock, {'l2 seed 0': 50, 'l2 seed 1': 20})
    progress.write('checkpointed')
    progress.close()
    text = tty.getvalue()
    self.assertEqual(lines, [])  # Everything went to the terminal, around the bar.
    self.assertIn('\r', text)
    screens = re.split(r'[\r\n]', text)
    final = [s for s in screens if '100/100' in s]
    self.assertNotEmpty(final, text)
    # 'runs 2/2', the count, then elapsed < time left and the speed (tqdm's format).
    self.assertRegex(final[-1], r'^runs 2/2: 100%\|.*\| 100/100 \[\d\d:\d\d<\d\d:\d\d, ')
    counts = re.findall(r'\| (\d+)/(\d+) \[', text)
    self.assertEqual({total for _, total in counts}, {'100'})  # 2 runs x 50 epochs.
    self.assertIn(('50', '100'), counts)  # After run 0's 50 epochs, before run 1's.
    # The finished runs' lines and the note each stand on their own line.
    self.assertIn('[1/2] l2 seed 0: stopped after 50 (max_epochs)', screens)
    self.assertIn('[2/2] l2 seed 1: stopped after 20 (patience)', screens)
    self.assertIn('checkpointed', screens)
    self.assertEqual(progress.epochs_done, 100)

  def test_live_can_be_forced_either_way(self):
    self.assertFalse(Progress(1, 1, stream=_Tty(), live=False).live)
    stream = io.StringIO()
    with Progress(1, 4, stream=stream, live=True) as progress:
      for _ in range(4):
        progress.on_epoch('r')
    self.assertIn('4/4', stream.getvalue())

  def test_bad_sizes_are_refused(self):
    with self.assertRaisesRegex(ValueError, 'max_epochs=0'):
      Progress(2, 0, stream=io.StringIO())


if __name__ == '__main__':
  absltest.main()
