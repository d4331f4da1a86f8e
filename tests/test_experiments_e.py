"""Experiment 5b (experiments/prechelt.py): Prechelt's criteria stop where his
definitions say on hand-made curves, and the smoke run writes its files."""

import json
import math
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from experiments import common
from experiments import early_stopping
from experiments import prechelt
from experiments.prechelt import Rule
from regjax.errors import ConfigError

# Validation error per epoch (0-based): the optimum 0.70 is at epoch 2, then it rises.
# GL(t) = 100 * (E_va(t) / 0.70 - 1): epochs 3..6 give 2.86, 7.14, 14.29, 28.57.
E_VA = [1.0, 0.8, 0.7, 0.72, 0.75, 0.8, 0.9]


class CriteriaTest(parameterized.TestCase):

  def test_generalization_loss_by_hand(self):
    gl = prechelt.generalization_loss(E_VA)
    np.testing.assert_allclose(gl, [0, 0, 0, 100 * (0.72 / 0.7 - 1), 100 * (0.75 / 0.7 - 1),
                                    100 * (0.8 / 0.7 - 1), 100 * (0.9 / 0.7 - 1)], atol=1e-12)

  @parameterized.parameters(
      # (alpha, 0-based stop epoch): the first epoch with GL(t) > alpha.
      (1, 3), (2, 3), (3, 4), (5, 4), (10, 5), (20, 6), (50, None))
  def test_gl_stops_at_first_epoch_above_alpha(self, alpha, stop):
    self.assertEqual(prechelt.stop_epoch(Rule('GL', alpha), E_VA, [1.0] * len(E_VA)), stop)

  def test_replay_keeps_the_best_validation_epoch_before_the_stop(self):
    r = prechelt.replay(Rule('GL', 3), E_VA, [1.0] * len(E_VA))
    self.assertEqual((r['stop_epoch'], r['epochs_run'], r['kept_epoch'], r['fired']),
                     (4, 5, 2, True))
    never = prechelt.replay(Rule('GL', 50), E_VA, [1.0] * len(E_VA))
    self.assertEqual((never['stop_epoch'], never['kept_epoch'], never['fired']),
                     (6, 2, False))

  def test_training_progress_by_hand(self):
    # Strip epochs 0..4 with training errors 0.5, 0.4, 0.3, 0.25, 0.2: mean 0.33,
    # minimum 0.2, so P_5 = 1000 * (1.65 / (5 * 0.2) - 1) = 650.
    e_tr = [0.5, 0.4, 0.3, 0.25, 0.2]
    self.assertAlmostEqual(prechelt.training_progress(e_tr, 4), 650.0)
    self.assertEqual(prechelt.training_progress([0.1] * 5, 4), 0.0)  # A flat strip.
    with self.assertRaises(ConfigError):
      prechelt.training_progress(e_tr, 3)  # No whole strip ends at epoch 3.

  def test_pq_is_checked_only_at_strip_ends(self):
    # Training error halves every epoch in the first strip (P_5 large), then is flat
    # within the second strip except one 1% step (P_5 = 1000 * (5.01 / 5 - 1) = 2).
    e_tr = [16, 8, 4, 2, 1, 1.01, 1, 1, 1, 1]
    # Validation error: optimum 0.5 at epoch 1, GL = 20 at epoch 4 and 10 at epoch 9.
    e_va = [1.0, 0.5, 0.55, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.55]
    p4 = prechelt.training_progress(e_tr, 4)  # 1000 * (31 / 5 - 1) = 5200.
    self.assertAlmostEqual(p4, 5200.0)
    self.assertAlmostEqual(prechelt.training_progress(e_tr, 9), 2.0)
    # At epoch 4: GL / P = 20 / 5200 < 0.5, no stop. At epoch 9: 10 / 2 = 5 > 0.5.
    self.assertEqual(prechelt.stop_epoch(Rule('PQ', 0.5), e_va, e_tr), 9)
    self.assertEqual(prechelt.stop_epoch(Rule('PQ', 4.9), e_va, e_tr), 9)
    self.assertIsNone(prechelt.stop_epoch(Rule('PQ', 5.1), e_va, e_tr))
    # GL is above 0 at epochs 2, 3 (not strip ends): PQ never looks there.
    self.assertEqual(prechelt.stop_epoch(Rule('GL', 5), e_va, e_tr), 2)

  def test_up_counts_successive_strip_increases(self):
    # Strip ends (0-based) 4, 9, 14, 19 with errors 0.5, 0.6, 0.7, 0.65: the error rose
    # over the strips ending at 9 and 14, then fell.
    e_va = [1.0] * 20
    for t, v in ((4, 0.5), (9, 0.6), (14, 0.7), (19, 0.65)):
      e_va[t] = v
    e_va[2] = 0.4  # Not a strip end: UP never looks at it.
    e_tr = [1.0] * 20
    self.assertEqual(prechelt.stop_epoch(Rule('UP', 1), e_va, e_tr), 9)
    self.assertEqual(prechelt.stop_epoch(Rule('UP', 2), e_va, e_tr), 14)
    self.assertIsNone(prechelt.stop_epoch(Rule('UP', 3), e_va, e_tr))
    r = prechelt.replay(Rule('UP', 2), e_va, e_tr)
    self.assertEqual((r['stop_epoch'], r['kept_epoch']), (14, 2))

  def test_patience_rule_is_regjax_early_stopping(self):
    r = prechelt.replay(Rule('patience', 2), E_VA, [1.0] * len(E_VA))
    rows = [{'epoch': t, 'val_loss': v} for t, v in enumerate(E_VA)]
    es = common.simulate_early_stopping(rows, 2)
    self.assertEqual((r['stop_epoch'], r['kept_epoch']), (es['stop_epoch'], es['kept_epoch']))
    self.assertEqual((r['stop_epoch'], r['kept_epoch']), (4, 2))

  def test_error_measures(self):
    curve = {'val_loss': [0.3, 0.2], 'val_accuracy': [0.9, 0.95]}
    self.assertEqual(prechelt.error_curve(curve, 'val_loss'), [0.3, 0.2])
    np.testing.assert_allclose(prechelt.error_curve(curve, 'val_error'), [0.1, 0.05])


class TrajectoriesTest(absltest.TestCase):

  def test_old_results_without_training_loss_are_refused(self):
    folder = tempfile.mkdtemp(prefix='regjax-prechelt-')
    old = {'noise=0': {'curves': [{'val_loss': [1.0], 'val_accuracy': [0.5],
                                   'test_accuracy': [0.5], 'trainset_accuracy': [0.5]}]}}
    with open(os.path.join(folder, 'results.json'), 'w', encoding='utf-8') as f:
      json.dump(old, f)
    with self.assertRaisesRegex(ConfigError, 'train_loss'):
      prechelt.load_trajectories(folder)

  def test_reads_what_early_stopping_writes(self):
    folder = tempfile.mkdtemp(prefix='regjax-prechelt-')
    curve = {k: [0.5, 0.4, 0.45] for k in early_stopping.CURVE_KEYS}
    with open(os.path.join(folder, 'results.json'), 'w', encoding='utf-8') as f:
      json.dump({'noise=0.2': {'curves': [curve, curve]}, 'settings': {'epochs': 3}}, f)
    curves, settings = prechelt.load_trajectories(os.path.join(folder, 'results.json'))
    self.assertEqual(list(curves), ['noise=0.2'])
    self.assertLen(curves['noise=0.2'], 2)
    self.assertEqual(settings['epochs'], 3)


class SmokeTest(absltest.TestCase):

  def test_smoke_writes_json_report_and_figure(self):
    out = tempfile.mkdtemp(prefix='regjax-prechelt-smoke-')
    results = prechelt.run(out, '', smoke=True, seeds=2, log=lambda _: None)
    with open(os.path.join(out, 'results.json'), encoding='utf-8') as f:
      saved = json.load(f)
    self.assertEqual(saved['figures'], ['prechelt_tradeoff.png'])
    with open(os.path.join(out, 'prechelt_tradeoff.png'), 'rb') as f:
      self.assertEqual(f.read(8), b'\x89PNG\r\n\x1a\n')
    with open(os.path.join(out, 'report.md'), encoding='utf-8') as f:
      text = f.read()
    self.assertIn('](prechelt_tradeoff.png)', text)
    self.assertIn('GL5', text)
    budget = early_stopping.SMOKE.epochs
    for per in results['analyses'].values():
      for a in per.values():
        self.assertLen(a['rules'], len(prechelt.RULES))
        for r in a['rules']:
          for x in r['per_seed']:
            self.assertLessEqual(x['kept_epoch'], x['stop_epoch'])
            self.assertLessEqual(x['epochs_run'], budget)
            if not x['fired']:
              self.assertEqual(x['epochs_run'], budget)  # Never fired: the budget.
        # Larger alpha never stops earlier (GL is monotone in alpha).
        gl = [r for r in a['rules'] if r['family'] == 'GL']
        gl.sort(key=lambda r: r['value'])
        for seed in range(2):
          runs = [r['per_seed'][seed]['epochs_run'] for r in gl]
          self.assertEqual(runs, sorted(runs))
        self.assertTrue(math.isfinite(a['summary'][0]['test_acc_mean']))


if __name__ == '__main__':
  absltest.main()
