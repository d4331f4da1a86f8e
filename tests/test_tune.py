"""Tuned comparisons: grids, the choice made on validation alone, resampled replicates,
what results.json and the workdir keep, and bad grids."""

import dataclasses
import functools
import glob
import json
import os
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np

from regjax import data as data_lib
from regjax import experiment
from regjax import schema
from regjax import tuning
from regjax import variants
from regjax import workdir as workdir_lib
from regjax.errors import ConfigError
from tests.test_main import ROOT


def tuned_config(**top):
  """digits with label noise, two tuned variants of 3 points, 3 replicates, short runs."""
  c = schema.overfitting_regime(schema.default_config())
  c.data.train_size = 300
  c.model.widths = (32,)
  c.train.epochs = 6
  c.early_stopping.patience = 2
  c.seeds = 3
  for key, value in top.items():
    c[key] = value
  variants.set_variants(c, **{
      'baseline': {'tune.optimizer.learning_rate': (3e-4, 1e-3, 3e-3)},
      'l2': {'tune.penalty.l2': (0.0, 1e-2, 1e-1)},
  })
  return c


@functools.lru_cache(maxsize=None)
def finished(resample=True):
  """(result, workdir) of the tuned comparison, run once per process."""
  workdir = tempfile.mkdtemp()
  result = experiment.run(tuned_config(resample=resample), workdir, log=lambda line: None,
                          checkpoint_every_s=None)
  return result, workdir


class GridTest(absltest.TestCase):

  def test_every_combination_of_the_tuned_fields(self):
    c = schema.default_config()
    variants.set_variants(c, base={}, dm={'tune.model.dropout_rate': (0.0, 0.5),
                                          'tune.optimizer.max_norm': (0.0, 3.0, 4.0)})
    self.assertEqual(variants.grid(c, 'base'), variants.Grid((), ({},)))
    g = variants.grid(c, 'dm')
    self.assertEqual(g.fields, ('model.dropout_rate', 'optimizer.max_norm'))
    self.assertLen(g.points, 6)
    self.assertEqual(g.points[1], {'model.dropout_rate': 0.0, 'optimizer.max_norm': 3.0})
    self.assertEqual(g.values('optimizer.max_norm'), [0.0, 3.0, 4.0])
    # The grid is not a field of the variant's config.
    self.assertNotIn('tune', variants.variant_config(c, 'dm'))

  def test_log_grid(self):
    self.assertEqual(variants.log_grid(1e-5, 1e-1, 5, zero=True),
                     (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1))
    self.assertEqual(variants.log_grid(2e-4, 1e-2, 3), (2e-4, 1.4e-3, 1e-2))

  def test_bad_grids_name_the_field(self):
    for values, expected in [
        ((), 'a non-empty tuple'), (('a', 'b'), 'a tuple of numbers'),
        ((1e-3, 1e-3), 'each value once'), ((float('nan'),), 'a tuple of numbers')]:
      with self.subTest(values=values):
        c = schema.default_config()
        variants.set_variants(c, base={}, l2={'tune.penalty.l2': values})
        with self.assertRaisesRegex(ConfigError, r'^variants\.l2\.tune\.penalty\.l2=.*'
                                    + expected):
          variants.grid(c, 'l2')
    c = schema.default_config()
    variants.set_variants(c, base={}, l2={'tune.penalty.l7': (1.0,)})
    with self.assertRaisesRegex(ConfigError, r'no such field penalty\.l7'):
      variants.grid(c, 'l2')

  def test_a_negative_strength_fails_before_anything_is_written(self):
    c = tuned_config()
    c.variants.l2.tune.penalty.l2 = (0.0, -1e-3, 1e-2)
    workdir = os.path.join(tempfile.mkdtemp(), 'new')
    with self.assertRaisesRegex(ConfigError, r'^variants\.l2\.tune\.penalty\.l2=-0\.001: '):
      experiment.run(c, workdir, log=lambda line: None)
    self.assertFalse(os.path.exists(workdir))

  def test_grids_must_be_equal_unless_the_config_says_otherwise(self):
    c = tuned_config()
    c.variants.l2.tune.penalty.l2 = (0.0, 1e-2)
    with self.assertRaisesRegex(ConfigError, r'^equal_grids=True: every variant needs the '
                                r"same number of grid points \(got \{'baseline': 3, 'l2': 2\}"):
      experiment.plan(c)
    c.equal_grids = False
    _, runs = experiment.plan(c)
    self.assertLen(runs, 3 * (3 + 2))


class ChooseTest(absltest.TestCase):

  def test_best_validation_value_wins_ties_go_to_the_first_and_divergence_never(self):
    recs = [{'val_loss': 0.5}, {'val_loss': 0.3}, {'val_loss': 0.3},
            {'val_loss': 0.1, 'diverged': True}, {'val_loss': float('nan')}]
    self.assertEqual(tuning.choose(recs, 'val_loss', 'min'), 1)
    acc = [{'val_accuracy': 0.8}, {'val_accuracy': 0.9}, {'val_accuracy': 0.9}]
    self.assertEqual(tuning.choose(acc, 'val_accuracy', 'max'), 1)
    self.assertEqual(tuning.choose([{'val_loss': None}, {'val_loss': 2.0}], 'val_loss',
                                   'min'), 1)

  def test_a_choice_on_the_grid_edge_in_half_the_replicates_warns(self):
    grid = variants.Grid(('penalty.l2',), tuple({'penalty.l2': v} for v in (0.0, 1e-3, 1e-2)))
    recs = lambda *chosen: [{'chosen': {'penalty.l2': v}} for v in chosen]
    s = tuning.summarize_choices(grid, recs(1e-2, 1e-2, 1e-3, 0.0))
    self.assertEqual((s['edge_fraction'], s['widen']), (0.5, True))
    self.assertEqual(s['fields']['penalty.l2'],
                     {'median': 5.5e-3, 'min': 0.0, 'max': 1e-2, 'on_edge': 2})
    # Choosing 0 (off) is not an edge to widen; the smallest positive value is not either.
    self.assertFalse(tuning.summarize_choices(grid, recs(0.0, 0.0, 1e-3, 1e-2))['widen'])
    lines = tuning.format_choices({'l2': s}, 'val_loss')
    self.assertIn('penalty.l2 0.0055 [0, 0.01] -- WARNING: on a grid edge in 2/4 '
                  'replicates; widen the grid', lines[1])

  def test_the_selection_metric_is_validated(self):
    c = tuned_config(select='test_accuracy')
    with self.assertRaisesRegex(ConfigError, r"^select='test_accuracy': the selection "
                                'metric must be one of val_loss, val_accuracy'):
      tuning.selection_metric(c)


class TunedComparisonTest(absltest.TestCase):

  def test_each_replicate_reports_its_point_best_on_validation(self):
    result, workdir = finished()
    with open(os.path.join(workdir, 'results.json')) as f:
      saved = json.load(f)
    self.assertLen(saved['records'], 2 * 3)  # One per (variant, replicate).
    for record in saved['records']:
      grid = record['grid']
      self.assertLen(grid, 3)
      vals = [g['val_metric'] for g in grid]
      self.assertEqual(record['chosen_index'], int(np.argmin(vals)))  # val_loss: lower.
      self.assertEqual(record['chosen'], grid[record['chosen_index']]['setting'])
      self.assertEqual(record['test_accuracy'], grid[record['chosen_index']]['test_accuracy'])
      self.assertEqual(record['val_loss'], vals[record['chosen_index']])
      # Its folder is the chosen point's, and only that point's weights are kept.
      self.assertEqual(record['run_dir'], os.path.join(
          'runs', record['variant'], f"seed_{record['seed']}",
          f"point_{record['chosen_index']}"))
      kept = glob.glob(os.path.join(workdir, 'runs', record['variant'],
                                    f"seed_{record['seed']}", '*',
                                    workdir_lib.VARIABLES_FILE))
      self.assertEqual(kept, [os.path.join(workdir, record['run_dir'],
                                           workdir_lib.VARIABLES_FILE)])
    rows = {r['variant']: r for r in saved['summary']}
    self.assertIn('p_adjusted', rows['l2'])
    self.assertEqual(set(rows['l2']['chosen']), {'penalty.l2'})
    for name in ('curves.png', 'effects.png', 'selection.png'):
      self.assertGreater(os.path.getsize(os.path.join(workdir, name)), 10_000, name)
    self.assertIn('Chosen per replicate on validation (val_loss)', result['table'])

  def test_the_test_set_cannot_influence_the_choice(self):
    # The same comparison with the test labels permuted: every choice and every
    # validation number is identical; only test numbers move.
    reference, _ = finished()
    original = data_lib.load_source

    def permuted_test_labels(data_config):
      raw = original(data_config)
      y = np.random.default_rng(0).permutation(raw.y_test)
      return dataclasses.replace(raw, y_test=y)

    with mock.patch.object(data_lib, 'load_source', permuted_test_labels):
      permuted = experiment.run(tuned_config(), tempfile.mkdtemp(), log=lambda line: None,
                                checkpoint_every_s=None)
    moved = 0
    for a, b in zip(reference['records'], permuted['records']):
      self.assertEqual((a['variant'], a['seed'], a['chosen_index']),
                       (b['variant'], b['seed'], b['chosen_index']))
      self.assertEqual([g['val_metric'] for g in a['grid']],
                       [g['val_metric'] for g in b['grid']])
      self.assertEqual([g['val_accuracy'] for g in a['grid']],
                       [g['val_accuracy'] for g in b['grid']])
      moved += a['test_accuracy'] != b['test_accuracy']
    self.assertGreater(moved, 0)  # The permutation did reach the test numbers.

  def test_replicates_resample_their_split_unless_told_not_to(self):
    for resample in (True, False):
      with self.subTest(resample=resample):
        _, runs = experiment.plan(tuned_config(resample=resample))
        splits = {p.seed: p.run.data for p in runs if p.variant == 'l2'}
        self.assertLen(splits, 3)
        val = [tuple(d.val_idx[:20]) for d in splits.values()]
        noisy = [tuple(d.y_train[:50]) for d in splits.values()]
        self.assertEqual(len(set(val)), 3 if resample else 1)
        self.assertEqual(len(set(noisy)), 3 if resample else 1)
        # Paired: both variants of a replicate see the same split.
        for p in runs:
          self.assertIs(p.run.data, splits[p.seed])
          self.assertEqual(p.run.config.data.split_seed, p.seed if resample else 0)

  def test_only_runs_a_subset_of_tuned_variants(self):
    c = tuned_config()
    c.only = 'l2'
    c.seeds = 2
    result = experiment.run(c, tempfile.mkdtemp(), log=lambda line: None,
                            checkpoint_every_s=None)
    self.assertEqual({r['variant'] for r in result['records']}, {'l2'})
    self.assertEqual(result['rows'][0]['baseline'], 'l2')


class CommandLineTest(absltest.TestCase):

  def run_main(self, *args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, '-m', 'regjax.main', *args,
                           f'--workdir={tempfile.mkdtemp()}/w', '--compilation_cache='],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

  def test_bad_grids_are_one_line_and_exit_2(self):
    for args, expected in [
        (["--config.variants.l2.tune.penalty.l2=(-1.0,0.1,0.2)"],
         'regjax: error: variants.l2.tune.penalty.l2=-1.0: '),
        (["--config.variants.l2.tune.penalty.l2=()"],
         'regjax: error: variants.l2.tune.penalty.l2=(): a non-empty tuple'),
        (["--variant=l2:tune.penalty.l7=(1.0,2.0)"], 'no such field penalty.l7'),
        (["--variant=l2:tune.penalty.l2=('a','b')"], 'a tuple of numbers')]:
      with self.subTest(args=args):
        proc = self.run_main('--config=configs/l2.py:smoke', *args)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        self.assertLen(lines, 1, proc.stderr)
        self.assertIn(expected, lines[0])


if __name__ == '__main__':
  absltest.main()
