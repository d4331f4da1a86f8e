"""What a comparison leaves in its workdir and says while it runs: the data it trained
on (label noise, subsampling), TensorBoard scalars per run, and nothing but what it
reports."""

import functools
import glob
import json
import os
import tempfile

from absl.testing import absltest
import numpy as np

from regjax import experiment
from regjax import workdir as workdir_lib
from tests.test_main import load_config


@functools.lru_cache(maxsize=None)
def finished():
  """(result, log lines, workdir) of configs/l2.py:smoke (tuned, 30% label noise)."""
  lines, workdir = [], tempfile.mkdtemp()
  result = experiment.run(load_config('configs/l2.py', 'smoke'), workdir,
                          log=lines.append, name='configs/l2.py:smoke')
  return result, lines, workdir


class OutputsTest(absltest.TestCase):

  def test_label_noise_and_subsampling_are_said_first_and_above_the_table(self):
    result, lines, _ = finished()
    said = ('digits (300 train / 135 val / 450 test), training split subsampled to 300 '
            '(data.train_size), 30% of training labels replaced at random '
            '(data.label_noise=0.3), a new split per replicate (resample)')
    self.assertTrue(lines[0].startswith('Computing on '), lines[0])
    self.assertIn(f'data: {said}', lines[0])
    self.assertEqual(result['table'].splitlines()[0], f'Data: {said}')

  def test_tensorboard_has_every_run_scalars_as_metrics_jsonl(self):
    from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
    _, _, workdir = finished()
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      rows = [json.loads(line) for line in f]
    runs = {(r['variant'], r['seed'], r.get('point')) for r in rows}
    folders = glob.glob(os.path.join(workdir, 'tensorboard', '*', 'seed_*', 'point_*'))
    self.assertLen(folders, len(runs))  # configs/l2.py tunes every variant.
    variant, seed, point = sorted(runs)[0]
    acc = event_accumulator.EventAccumulator(os.path.join(
        workdir, 'tensorboard', variant, f'seed_{seed}', f'point_{point}'))
    acc.Reload()
    events = acc.Scalars('val_loss')
    mine = [r for r in rows if (r['variant'], r['seed'], r.get('point')) ==
            (variant, seed, point)]
    self.assertEqual([e.step for e in events], [r['epoch'] for r in mine])
    np.testing.assert_allclose([e.value for e in events], [r['val_loss'] for r in mine],
                               rtol=1e-6)

  def test_a_finished_workdir_keeps_one_weights_file_per_reported_run(self):
    result, _, workdir = finished()
    weights = sorted(glob.glob(os.path.join(workdir, 'runs', '**',
                                            workdir_lib.VARIABLES_FILE), recursive=True))
    self.assertEqual(weights, sorted(os.path.join(workdir, r['run_dir'],
                                                  workdir_lib.VARIABLES_FILE)
                                     for r in result['records']))
    self.assertFalse(os.path.exists(os.path.join(workdir, 'checkpoints')))
    for name in ('curves.png', 'effects.png', 'selection.png', 'results.json',
                 'results.csv', 'metrics.jsonl', 'config.json'):
      self.assertTrue(os.path.exists(os.path.join(workdir, name)), name)


if __name__ == '__main__':
  absltest.main()
