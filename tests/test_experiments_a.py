"""Experiments 1, 3, 4, 5 (part A): each smoke form runs and writes what it promises;
the shared replay of early stopping, the ECE and the sparsity bookkeeping are exact."""

import json
import os
import tempfile

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from experiments import common
from experiments import dropout
from experiments import early_stopping
from experiments import l1_vs_l2
from experiments import notebook_reproduction
from regjax import schema
from regjax import train
from regjax.data import load_dataset
from regjax.errors import ConfigError

_RESULTS: dict[str, tuple[str, dict]] = {}
SMOKE_SEEDS = 2


def smoke(name: str) -> tuple[str, dict]:
  """Runs experiment `name` in smoke form once per test process; (out dir, results)."""
  if name not in _RESULTS:
    module = {'notebook': notebook_reproduction, 'l1': l1_vs_l2, 'dropout': dropout,
              'early_stopping': early_stopping}[name]
    out = tempfile.mkdtemp(prefix=f'regjax-{name}-')
    results = module.run(out, '', smoke=True, seeds=SMOKE_SEEDS, log=lambda _: None)
    _RESULTS[name] = (out, results)
  return _RESULTS[name]


class OutputsTest(parameterized.TestCase):

  @parameterized.parameters(
      ('notebook', ('notebook_test_accuracy.png', 'proper_curves.png', 'proper_effect.png')),
      ('l1', ('l1l2_histograms.png', 'l1l2_sweep.png', 'l1l2_importance.png')),
      ('dropout', ('dropout_rates.png', 'dropout_scaling.png', 'dropout_mc.png')),
      ('early_stopping', ('es_curves.png', 'es_tradeoff.png')),
  )
  def test_smoke_writes_json_report_and_embedded_figures(self, name, figures):
    out, results = smoke(name)
    with open(os.path.join(out, 'results.json'), encoding='utf-8') as f:
      saved = json.load(f)
    self.assertGreater(saved['runtime_seconds'], 0)
    self.assertEqual(saved['figures'], list(figures))
    with open(os.path.join(out, 'report.md'), encoding='utf-8') as f:
      text = f.read()
    for fig in figures:
      with open(os.path.join(out, fig), 'rb') as f:
        self.assertEqual(f.read(8), b'\x89PNG\r\n\x1a\n')
      self.assertIn(f']({fig})', text)  # Embedded in the report.
      self.assertLess(os.path.getsize(os.path.join(out, fig)), 300_000)
    self.assertIn('Runtime', text)
    self.assertEqual(saved['figures'], results['figures'])


class NotebookTest(absltest.TestCase):

  def test_notebook_curves_have_one_point_per_epoch_and_seed(self):
    _, r = smoke('notebook')
    curves = r['notebook']['curves']
    self.assertEqual(sorted(curves), ['dropout_0.5', 'none'])
    for runs in curves.values():
      self.assertLen(runs, SMOKE_SEEDS)
      for c in runs:
        self.assertLen(c, notebook_reproduction.NOTEBOOK_EPOCHS)
        self.assertTrue(all(0.5 < a <= 1.0 for a in c))  # Digits learns in 5 epochs.
    # The paired difference is exactly the mean of the per-seed differences.
    final = r['notebook']['final_test_accuracy']
    diff = next(row for row in r['notebook']['summary'] if row['variant'] == 'dropout_0.5')
    self.assertAlmostEqual(diff['diff_mean'],
                           np.mean(np.subtract(final['dropout_0.5'], final['none'])), places=6)

  def test_proper_rules_keep_epochs_chosen_by_validation_only(self):
    _, r = smoke('notebook')
    cell = r['proper']['smoke']
    for rule in notebook_reproduction.RULES:
      for rec in cell['rules'][rule]['records']:
        self.assertLessEqual(rec['best_epoch'], rec['stop_epoch'])
        curve = cell['curves'][rec['variant']][rec['seed']]
        self.assertAlmostEqual(rec['test_accuracy'], curve['test_accuracy'][rec['best_epoch']])
        if rule == 'early_stop':
          # The kept epoch has the lowest validation loss of the epochs trained.
          trained = curve['val_loss'][:rec['stop_epoch'] + 1]
          self.assertEqual(rec['best_epoch'], int(np.argmin(trained)))


class L1VsL2Test(absltest.TestCase):

  def test_only_proximal_l1_makes_exact_zeros(self):
    _, r = smoke('l1')
    zeros = {(run['method']): np.mean([s['zero_fraction'] for s in run['seeds']])
             for run in r['runs']}
    self.assertEqual(zeros['none'], 0.0)
    self.assertEqual(zeros['l2'], 0.0)
    self.assertEqual(zeros['l1_subgradient'], 0.0)
    self.assertGreater(zeros['l1_prox'], 0.01)
    # The subgradient leaves more weights near zero than no regularization does.
    near = {run['method']: np.mean([s['first_near_zero_fraction'] for s in run['seeds']])
            for run in r['runs']}
    self.assertGreater(near['l1_subgradient'], near['none'])

  def test_importance_maps_are_image_shaped(self):
    _, r = smoke('l1')
    self.assertLen(r['importance_maps'], 4)
    for m in r['importance_maps'].values():
      self.assertEqual(np.asarray(m).shape, (8, 8))  # Digits are 8x8.
      self.assertTrue(np.all(np.asarray(m) >= 0))


class DropoutTest(absltest.TestCase):

  def test_ece_of_a_hand_computed_case(self):
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]])
    labels = np.array([0, 1, 0])
    # One example per bin: |1 - 0.9|, |0 - 0.6|, |1 - 0.8| averaged over 3 examples.
    self.assertAlmostEqual(dropout.expected_calibration_error(probs, labels, bins=10), 0.3)
    m = dropout.prob_metrics(probs, labels)
    self.assertAlmostEqual(m['accuracy'], 2 / 3)
    self.assertAlmostEqual(m['nll'], -np.mean(np.log([0.9, 0.4, 0.8])))

  def test_mc_and_activation_results(self):
    _, r = smoke('dropout')
    s = dropout.SMOKE
    for run in r['mc_dropout']:
      self.assertLen(run['mc'], s.mc_passes)
      for m in run['mc'] + [run['deterministic']]:
        self.assertTrue(0 <= m['ece'] <= 1 and m['nll'] > 0)
    # The first dropout layer sees a deterministic input, so its mean training output
    # matches the inference output up to mask noise, in both scalings.
    first = r['activations']['_Hidden_0']
    for name in ('p=0.5', 'p=0.5 classic'):
      self.assertLess(first[name]['relative_difference'], 0.1)
    # Classic scaling shrinks the inference output by (1 - p) relative to the unscaled
    # activations it trained on: the means differ from inverted's (different weights),
    # but both are positive ReLU outputs.
    self.assertGreater(first['p=0.5 classic']['mean_inference'], 0)
    for diffs in r['classic_minus_inverted'].values():
      self.assertLen(diffs, SMOKE_SEEDS)


class EarlyStoppingTest(parameterized.TestCase):

  ROWS = [{'epoch': e, 'val_loss': v, 'val_accuracy': -v}
          for e, v in enumerate([5.0, 4.0, 3.0, 3.5, 3.6, 3.7, 2.0])]

  @parameterized.parameters(
      # (patience, restore, stop_epoch, kept_epoch): Keras semantics, 0-based epochs.
      (0, True, 3, 2), (2, True, 4, 2), (2, False, 4, 4), (3, True, 5, 2),
      (None, True, 6, 6), (None, False, 6, 6),
  )
  def test_replay_follows_keras(self, patience, restore, stop, kept):
    for monitor in ('val_loss', 'val_accuracy'):  # min and max mode.
      es = common.simulate_early_stopping(self.ROWS, patience, monitor, restore)
      self.assertEqual((es['stop_epoch'], es['kept_epoch']), (stop, kept))
      self.assertEqual(es['epochs_run'], stop + 1)

  def test_replay_equals_train_fit(self):
    c = schema.default_config()
    c.data.train_size, c.data.label_noise = 400, 0.3
    c.model.widths, c.train.epochs, c.early_stopping.patience = (64,), 30, 2
    c.optimizer.learning_rate = 1e-2
    data = load_dataset(c.data)
    rows, _ = common.Trajectory(c, data).run(3)
    es = common.simulate_early_stopping(rows, 2)
    record, history, _ = train.fit(c, data, 3)
    self.assertTrue(es['stopped'])  # The case is one that stops early.
    self.assertEqual(record['stop_epoch'], es['stop_epoch'])
    self.assertEqual(record['best_epoch'], es['kept_epoch'])
    self.assertAlmostEqual(record['test_accuracy'], rows[es['kept_epoch']]['test_accuracy'],
                           places=5)
    # The same program (no zero-strength terms added), so the same path to the last bit.
    np.testing.assert_array_equal([h['val_loss'] for h in history],
                                  [r['val_loss'] for r in rows[:len(history)]])

  def test_trajectory_refuses_a_penalty_outside_its_program(self):
    c = schema.default_config()
    c.data.train_size, c.train.epochs, c.model.widths = 100, 1, (8,)
    traj = common.Trajectory(c, load_dataset(c.data))
    with self.assertRaisesRegex(ConfigError, 'penalties'):
      traj.run(0, penalty={'l2': 1e-3})

  def test_patience_sweep_is_monotone_and_checked(self):
    _, r = smoke('early_stopping')
    self.assertTrue(r['replay_check']['agrees'])
    for seed_rules in r['noise=0.3']['per_monitor']['val_loss']:
      runs = [x['epochs_run'] for x in seed_rules if x['restore']]
      self.assertEqual(runs, sorted(runs))  # More patience never trains less.
      self.assertEqual(runs[-1], early_stopping.SMOKE.epochs)  # ∞ trains the budget.
      for x in seed_rules:
        self.assertGreaterEqual(x['lost_vs_oracle'], 0.0)
        self.assertAlmostEqual(x['compute_saved'],
                               1 - x['epochs_run'] / early_stopping.SMOKE.epochs)


class FlagsTest(absltest.TestCase):

  def test_importing_the_experiments_defines_no_flags(self):
    # Experiments define --out etc. only under __main__, so they can share a process.
    self.assertNotIn('out', flags.FLAGS)
    self.assertNotIn('smoke', flags.FLAGS)

  def test_bad_input_is_one_line_and_exit_status_2(self):
    def bad():
      raise ConfigError('data.dir', '/nowhere', 'is not a folder')
    with self.assertRaises(SystemExit) as cm:
      common.run_or_fail(bad)
    self.assertEqual(cm.exception.code, 2)

  def test_default_mnist_dir_prefers_the_environment(self):
    old = os.environ.get('REGJAX_MNIST_DIR')
    os.environ['REGJAX_MNIST_DIR'] = '/somewhere/mnist'
    try:
      self.assertEqual(common.default_mnist_dir(), '/somewhere/mnist')
    finally:
      if old is None:
        del os.environ['REGJAX_MNIST_DIR']
      else:
        os.environ['REGJAX_MNIST_DIR'] = old


if __name__ == '__main__':
  absltest.main()
