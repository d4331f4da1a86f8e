"""TensorBoard scalars: written with tensorboardX, read back with TensorBoard's own reader."""

import glob
import math
import os
from pathlib import Path
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from tensorboard.backend.event_processing import event_accumulator

from regjax import tensorboard as tb


def _tempdir(test: absltest.TestCase) -> str:
  return test.enter_context(tempfile.TemporaryDirectory())


def _read(logdir: str, purge: bool = True) -> dict[str, list[tuple[int, float]]]:
  """tag -> [(step, value)] as TensorBoard sees the folder (every event file in it)."""
  acc = event_accumulator.EventAccumulator(
      logdir, size_guidance={event_accumulator.SCALARS: 0},  # 0 = keep every point.
      purge_orphaned_data=purge)
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
          for tag in acc.Tags()['scalars']}


def _f32(x: float) -> float:
  """What TensorBoard gives back for x: its scalars are float32."""
  return float(np.float32(x))


def _event_files(logdir: str) -> list[str]:
  return sorted(glob.glob(os.path.join(logdir, '*tfevents*')))


class RunLogdirTest(absltest.TestCase):

  def test_layout(self):
    self.assertEqual(tb.run_logdir('/w', 'l2_1e-3', 4), '/w/tensorboard/l2_1e-3/seed_4')
    self.assertEqual(tb.run_logdir('w', 'a/b', 0), 'w/tensorboard/a_b/seed_0')


class ScalarsTest(absltest.TestCase):

  def test_keeps_real_numbers_but_epoch_and_skips_the_rest(self):
    row = {'epoch': 3, 'train_loss': 0.5, 'val_accuracy': np.float32(0.25),
           'count': np.int64(7), 'lr': 1, 'val_loss': float('nan'), 'x': None,
           'flag': True, 'np_flag': np.bool_(False), 'name': 'a', 'big': float('inf')}
    self.assertEqual(tb.scalars(row), {'train_loss': 0.5, 'val_accuracy': 0.25,
                                       'count': 7.0, 'lr': 1.0, 'big': math.inf})


class WriteRowsTest(parameterized.TestCase):

  def test_two_runs_read_back_with_tensorboards_reader(self):
    workdir = _tempdir(self)
    runs = {
        ('baseline', 0): [{'epoch': e, 'train_loss': 1.0 / (e + 1), 'val_accuracy': 0.1 * e,
                           'seconds': 0.01 * e + 1e-3} for e in range(4)],
        ('l2_1e-2', 1): [{'epoch': 0, 'train_loss': 2.3, 'val_loss': float('nan')},
                         {'epoch': 1, 'train_loss': 1.7, 'val_loss': 1.9, 'note': 'x'}],
    }
    for (variant, seed), rows in runs.items():
      tb.write_rows(tb.run_logdir(workdir, variant, seed), rows)
    # TensorBoard sees exactly the two runs, as <variant>/seed_<seed>.
    root = os.path.join(workdir, 'tensorboard')
    found = sorted(os.path.relpath(os.path.dirname(f), root) for f in
                   glob.glob(os.path.join(root, '**', '*tfevents*'), recursive=True))
    self.assertEqual(found, ['baseline/seed_0', 'l2_1e-2/seed_1'])
    self.assertEqual(_read(tb.run_logdir(workdir, 'baseline', 0)), {
        'train_loss': [(e, _f32(1.0 / (e + 1))) for e in range(4)],
        'val_accuracy': [(e, _f32(0.1 * e)) for e in range(4)],
        'seconds': [(e, _f32(0.01 * e + 1e-3)) for e in range(4)],
    })
    # The NaN of epoch 0 is skipped, not written as a point; the string is not a tag.
    self.assertEqual(_read(tb.run_logdir(workdir, 'l2_1e-2', 1)), {
        'train_loss': [(0, _f32(2.3)), (1, _f32(1.7))],
        'val_loss': [(1, _f32(1.9))],
    })

  @parameterized.parameters(True, False)
  def test_rewriting_a_run_leaves_one_point_per_step(self, purge):
    logdir = tb.run_logdir(_tempdir(self), 'baseline', 0)
    tb.write_rows(logdir, [{'epoch': e, 'loss': 10.0 + e} for e in range(5)])
    tb.write_rows(logdir, [{'epoch': e, 'loss': 20.0 + e} for e in range(3)])
    # Even a reader that ignores purge markers sees only the second write.
    self.assertLen(_event_files(logdir), 1)
    self.assertEqual(_read(logdir, purge), {'loss': [(e, 20.0 + e) for e in range(3)]})
    self.assertEqual(os.listdir(os.path.dirname(logdir)), ['seed_0'])  # No temp folders.

  def test_leftovers_of_a_crashed_write_are_removed(self):
    logdir = tb.run_logdir(_tempdir(self), 'baseline', 0)
    parent = os.path.dirname(logdir)
    for stale in ('.seed_0.abc.new-tmp', '.seed_0.def.old-tmp'):
      os.makedirs(os.path.join(parent, stale, 'inner'))
    os.makedirs(os.path.join(parent, 'seed_01'))  # Another run's folder stays.
    tb.write_rows(logdir, [{'epoch': 0, 'loss': 1.0}])
    self.assertEqual(sorted(os.listdir(parent)), ['seed_0', 'seed_01'])

  @parameterized.parameters(
      ({'loss': 1.0},), ({'epoch': -1, 'loss': 1.0},), ({'epoch': 1.0, 'loss': 1.0},),
      ({'epoch': True, 'loss': 1.0},))
  def test_row_without_a_valid_epoch_writes_nothing(self, bad):
    logdir = tb.run_logdir(_tempdir(self), 'baseline', 0)
    with self.assertRaisesRegex(ValueError, r"^metrics row epoch=.*: needs an 'epoch' int"):
      tb.write_rows(logdir, [{'epoch': 0, 'loss': 2.0}, bad])
    self.assertFalse(os.path.exists(os.path.dirname(logdir)))


class TensorBoardLoggerTest(absltest.TestCase):

  def test_streams_rows_and_close_writes_them_out(self):
    logdir = tb.run_logdir(_tempdir(self), 'baseline', 0)
    with tb.TensorBoardLogger(logdir) as logger:
      for e in range(3):
        logger.write_row({'epoch': e, 'train_loss': 1.0 / (e + 1), 'val_loss': None})
    self.assertEqual(_read(logdir),
                     {'train_loss': [(e, _f32(1.0 / (e + 1))) for e in range(3)]})

  def test_resumed_run_replaces_the_epochs_it_trains_again(self):
    logdir = tb.run_logdir(_tempdir(self), 'baseline', 0)
    # Interrupted after epoch 4 with the last checkpoint at epoch 2: the resumed process
    # trains epochs 3.. again (here with other values, to tell them apart).
    with tb.TensorBoardLogger(logdir) as first:
      for e in range(5):
        first.write_row({'epoch': e, 'loss': 10.0 + e, 'acc': 0.5})
    with tb.TensorBoardLogger(logdir) as resumed:
      for e in range(3, 7):
        resumed.write_row({'epoch': e, 'loss': 20.0 + e, 'acc': 0.75})
    history = ([{'epoch': e, 'loss': 10.0 + e, 'acc': 0.5} for e in range(3)]
               + [{'epoch': e, 'loss': 20.0 + e, 'acc': 0.75} for e in range(3, 7)])
    expected = {'loss': [(r['epoch'], r['loss']) for r in history],
                'acc': [(r['epoch'], r['acc']) for r in history]}
    self.assertLen(_event_files(logdir), 2)
    self.assertEqual(_read(logdir), expected)  # TensorBoard honours the purge marker.
    # A reader that does not sees epochs 3 and 4 twice, hence write_rows at the end.
    self.assertLen(_read(logdir, purge=False)['loss'], 9)
    tb.write_rows(logdir, history)
    self.assertLen(_event_files(logdir), 1)
    self.assertEqual(_read(logdir, purge=False), expected)


class ImportTest(absltest.TestCase):

  def test_importing_regjax_tensorboard_does_not_import_tensorboardx(self):
    code = ('import sys, regjax.tensorboard; '
            "print(any(m.split('.')[0] in ('tensorboardX', 'tensorboard') "
            'for m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    self.assertEqual(out.stdout.strip(), 'False')


if __name__ == '__main__':
  absltest.main()
