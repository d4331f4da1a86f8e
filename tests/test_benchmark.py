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
    for code in (benchmark.KERAS_CHILD, benchmark.TORCH_CHILD):
      compile(code, 'child', 'exec')


class SmokeTest(absltest.TestCase):

  def test_smoke_run_writes_every_section_and_the_targets(self):
    with tempfile.TemporaryDirectory() as out:
      env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
      # A Python that cannot import either framework: both rows must skip with a note.
      missing = os.path.join(out, 'no-such-python')
      proc = subprocess.run(
          [sys.executable, '-m', 'experiments.benchmark', '--smoke', f'--out={out}',
           f'--keras_python={missing}', '--torch_python='],
          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
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
    self.assertGreater(results['first_compile_seconds'], 0)
    self.assertGreater(results['peak_rss_mib']['end'], 50)
    targets = results['targets']
    self.assertIsNone(targets['keras_speedup_batch32']['met'])
    self.assertIn(targets['roof_fraction_batch_256']['met'], (True, False))
    self.assertIn(targets['first_compile_seconds']['met'], (True, False))
    self.assertIn('## Targets', summary)
    self.assertIn('| keras | skipped:', summary)
    self.assertIn(benchmark.FLOP_FORMULA, summary)


if __name__ == '__main__':
  absltest.main()
