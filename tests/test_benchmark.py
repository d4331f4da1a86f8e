"""experiments/benchmark.py --smoke: every section runs and reports; no speed asserted."""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

from experiments import benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FlopsTest(absltest.TestCase):

  def test_flop_count_of_the_classic_mlp(self):
    # Forward 2*(784*128 + 128*10), weight gradients the same, and the hidden-layer
    # gradient 2*128*10; no gradient with respect to the input.
    self.assertEqual(benchmark.flops_per_example(784, 128, 10),
                     2 * (784 * 128 + 1280) * 2 + 2 * 1280)
    self.assertEqual(benchmark.flops_per_example(784), 409_088)

  def test_framework_scripts_are_valid_python(self):
    for code in (benchmark.KERAS_CHILD, benchmark.NOTEBOOK_CHILD, benchmark.TORCH_CHILD,
                 benchmark.REGJAX_CHILD):
      compile(code, 'child', 'exec')


class LanesTest(absltest.TestCase):
  """The lanes a compacting RunGroup computes per epoch, from its members' epochs."""

  def test_program_shrinks_once_half_the_lanes_stopped(self):
    one_device = lambda n: n
    # 4 lanes until three stop after epoch 3 (1 running <= 4 // 2), then 1 lane.
    self.assertEqual(benchmark.lanes_per_epoch([10, 3, 3, 3], one_device),
                     [4, 4, 4] + [1] * 7)
    # Two of four stop after epoch 2: 2 running <= 2, so 2 lanes from epoch 3.
    self.assertEqual(benchmark.lanes_per_epoch([5, 5, 2, 2], one_device),
                     [4, 4, 2, 2, 2])
    # Five lanes: 3 running is more than half of 5, 2 is not (2 lanes); then 1 of 2.
    lanes = benchmark.lanes_per_epoch([5, 4, 3, 2, 2], one_device)
    self.assertEqual(lanes, [5, 5, 5, 2, 1])
    self.assertEqual(sum(lanes), 18)  # Computed, against 16 member-epochs needed.
    # Three running of eight move into 4 lanes (the next power of two), not 3.
    self.assertEqual(benchmark.lanes_per_epoch([3, 3, 3] + [1] * 5, one_device),
                     [8, 4, 4])

  def test_lanes_are_padded_to_the_placement(self):
    # E.g. two devices: a program's lanes are a multiple of 2.
    two_devices = lambda n: n + n % 2
    self.assertEqual(benchmark.lanes_per_epoch([4, 1, 1], two_devices), [4, 2, 2, 2])


class SmokeTest(absltest.TestCase):

  def test_smoke_run_writes_every_section_and_the_targets(self):
    with tempfile.TemporaryDirectory() as out:
      env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
      # A Python that cannot import either framework: both rows must skip with a note.
      missing = os.path.join(out, 'no-such-python')
      proc = subprocess.run(
          [sys.executable, '-m', 'experiments.benchmark', '--smoke', f'--out={out}',
           f'--keras_python={missing}', '--torch_python='],
          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
      self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
      with open(os.path.join(out, 'results.json')) as f:
        results = json.load(f)
      with open(os.path.join(out, 'summary.md')) as f:
        summary = f.read()
    self.assertEqual(results['dataset'], 'digits')
    self.assertEqual(results['input_dim'], 64)
    ours = results['classic']['regjax']
    self.assertLen(ours['runs'][0]['epoch_seconds'], 2)
    self.assertGreater(ours['final_test_accuracy'], 0.5)  # Chance is 0.1.
    self.assertIn('skipped', results['classic']['keras'])
    self.assertIn('skipped', results['classic']['notebook'])  # Keras' Python: missing.
    # regjax's row ran in its own process, checkpoints on, its memory by stage.
    self.assertEqual(ours['checkpoints']['interval_s'], 5.0)
    stages = ours['memory_stages_mib']
    self.assertEqual(list(stages), list(benchmark.MEMORY_STAGES))
    peaks = [stages[k]['hwm'] for k in stages]
    self.assertEqual(peaks, sorted(peaks))  # A peak never goes down.
    self.assertEqual(ours['peak_rss_mib'], peaks[-1])
    self.assertEqual(results['peak_rss_mib']['regjax_classic'], peaks[-1])
    self.assertIn('### Peak memory of the classic run', summary)
    dropout = results['dropout']
    self.assertGreater(dropout['ratio'], 0)  # Timed: nothing stricter.
    self.assertLen(dropout['ratios'], 2)
    self.assertEqual(set(results['checkpoints']), {'notebook', 'l2'})
    for name, c in results['checkpoints'].items():
      self.assertEqual(c['config'], f'configs/{name}.py:smoke')
      self.assertLen(c['ratios'], 1)
      self.assertLen(c['saves_per_comparison'], 1)
      self.assertAlmostEqual(c['ratio'], c['ratios'][0])
    self.assertEqual(results['checkpoints']['notebook']['runs'], 4)  # 2 variants x 2 seeds.
    self.assertIn('## Dropout and checkpoints: what they add', summary)
    self.assertIn('not requested', results['classic']['torch']['skipped'])
    floor = results['classic']['matmul_floor']
    self.assertEqual(floor['batch_size'], 32)
    self.assertGreater(floor['gflops'], 0)  # Timed, so nothing stricter is asserted.
    self.assertIn('The classic MLP\'s training matmuls alone', summary)
    self.assertIsNone(results['peak_device_mib']['end'])  # CPU: no device memory stats.
    self.assertEqual([r['batch_size'] for r in results['gflops']['by_batch']],
                     [32, 256, 1024])
    for row in results['gflops']['by_batch']:
      self.assertAlmostEqual(row['roof_fraction'],
                             row['gflops'] / results['gflops']['roof']['gflops'])
      # All 1,347 digits training images (no validation split), whole batches only.
      examples = (1347 // row['batch_size']) * row['batch_size']
      self.assertEqual(row['examples'], examples)
      self.assertAlmostEqual(row['gflop_per_epoch'],
                             examples * benchmark.flops_per_example(64) / 1e9)
    self.assertEqual(set(results['scan_vs_step_loop']), {'scan', 'step_loop'})
    self.assertEqual(set(results['sweeps']), {'default'})
    for name, s in results['sweeps'].items():
      self.assertEqual(s['members'], 4, name)
      # The vmapped members are the sequential runs (float tolerance).
      self.assertLess(s['max_test_accuracy_difference'], 0.01, name)
      self.assertEqual(s['same_stop_epoch'], s['members'], name)
      # The vmapped sweep runs as long as its longest member.
      self.assertBetween(s['member_epochs'], s['vmapped_epochs'], 4 * s['vmapped_epochs'])
      # It computes every needed member-epoch, and at most all lanes of every epoch.
      self.assertLen(s['program_lanes_per_epoch'], s['vmapped_epochs'])
      self.assertEqual(s['computed_member_epochs'], sum(s['program_lanes_per_epoch']))
      self.assertBetween(s['computed_member_epochs'], s['member_epochs'],
                         s['members'] * s['vmapped_epochs'])
      self.assertAlmostEqual(s['computed_per_needed'],
                             s['computed_member_epochs'] / s['member_epochs'])
      # Two programs one after another (without and with the L2 term), each compiled once.
      self.assertEqual(s['sequential_programs_compiled'], 2)
      self.assertGreaterEqual(s['vmapped_programs_compiled'], 1)
    self.assertGreater(results['first_compile_seconds'], 0)
    self.assertGreater(results['first_compile_cpu_seconds'], 0)
    self.assertGreater(results['peak_rss_mib']['end'], 50)
    targets = results['targets']
    self.assertIsNone(targets['keras_speedup_batch32']['met'])
    for name in ('notebook_speedup_dropout', 'keras_ahead', 'torch_ahead',
                 'peak_rss_vs_keras'):
      self.assertIsNone(targets[name]['met'], name)  # Their rows were skipped.
    for name in ('dropout_epoch_ratio', 'checkpoint_overhead_notebook',
                 'checkpoint_overhead_l2'):
      self.assertIn(targets[name]['met'], (True, False), name)
    self.assertIn(targets['roof_fraction_batch_256']['met'], (True, False))
    self.assertIn(targets['first_compile_seconds']['met'], (True, False))
    self.assertIn('## Targets', summary)
    self.assertIn('| keras | skipped:', summary)
    self.assertIn(benchmark.FLOP_FORMULA, summary)
    self.assertIn('member-epochs computed / needed', summary)


if __name__ == '__main__':
  absltest.main()
