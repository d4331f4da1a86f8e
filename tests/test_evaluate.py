"""Reading a comparison back: load_run, and `python -m regjax.evaluate` equals results.json."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
import flax.serialization
import numpy as np

import regjax
from regjax import data
from regjax import evaluate
from regjax import experiment
from regjax import workdir as workdir_lib
from regjax.errors import ConfigError
from tests.test_main import ROOT, load_config

_WORKDIR = None  # The l2 :smoke comparison, trained once for every test here.


def setUpModule():
  global _WORKDIR
  _WORKDIR = tempfile.mkdtemp()
  experiment.run(load_config('tests/configs/fixed_l2.py', 'smoke'), _WORKDIR, log=lambda line: None,
                 checkpoint_every_s=None)


def tearDownModule():
  shutil.rmtree(_WORKDIR, ignore_errors=True)


def _records(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'results.json')) as f:
    return json.load(f)['records']


def run_evaluate(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, '-m', 'regjax.evaluate', *args], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=600)


def _printed(stdout: str) -> dict[tuple[str, int], list[str]]:
  """{(variant, seed): [the numbers after the seed]} from the printed table, whose last
  column (the weights file) is checked against the record's run_dir."""
  out = {}
  for line in stdout.splitlines():
    m = re.fullmatch(r'(\S+)\s+(\d+)\s+((?:\s*(?:[\d.]+|nan))+)\s+(\S+)', line.strip())
    if m:
      out[(m.group(1), int(m.group(2)))] = m.group(3).split()
      out[(m.group(1), int(m.group(2)), 'weights')] = m.group(4)
  return out


def _tempdir(test: absltest.TestCase) -> str:
  return test.enter_context(tempfile.TemporaryDirectory())


class EvaluateCommandTest(absltest.TestCase):

  def test_prints_every_recorded_test_accuracy(self):
    out = run_evaluate(f'--workdir={_WORKDIR}')
    self.assertEqual(out.returncode, 0, out.stderr)
    printed = _printed(out.stdout)
    records = _records(_WORKDIR)
    self.assertLen(records, 12)  # 6 variants x 2 seeds.
    self.assertLen(printed, 2 * 12)
    for r in records:
      expected = f"{100 * r['test_accuracy']:.2f}"
      self.assertEqual(printed[(r['variant'], r['seed'])], [expected, expected])
      weights = printed[(r['variant'], r['seed'], 'weights')]
      self.assertEqual(weights, os.path.join(r['run_dir'], 'variables.msgpack'))
      self.assertTrue(os.path.isfile(os.path.join(_WORKDIR, weights)))
    self.assertNotIn('differ from results.json', out.stderr)

  def test_another_dataset_of_the_same_shape(self):
    # The digits test images mirrored left-right, stored as an npz: same shape, other
    # data. Each printed accuracy is the model's own, computed here by hand.
    digits = data.load_dataset(load_config('tests/configs/fixed_l2.py', 'smoke').data)
    mirrored = np.ascontiguousarray(digits.x_test[:, :, ::-1])
    path = os.path.join(_tempdir(self), 'mirrored.npz')
    np.savez(path, x_train=mirrored, y_train=digits.y_test, x_test=mirrored,
             y_test=digits.y_test)
    out = run_evaluate(f'--workdir={_WORKDIR}', f'--data=npz:{path}')
    self.assertEqual(out.returncode, 0, out.stderr)
    printed = _printed(out.stdout)
    self.assertLen(printed, 2 * 12)
    for variant, seed in [('baseline', 0), ('l2_1e-2', 1)]:
      model, variables, _ = regjax.load_run(_WORKDIR, variant, seed)
      logits = model.apply(variables, mirrored, train=False)
      accuracy = np.mean(np.argmax(logits, -1) == digits.y_test)
      self.assertEqual(printed[(variant, seed)], [f'{100 * accuracy:.2f}'])
    # The run's own dataset by name gives the recorded numbers.
    out = run_evaluate(f'--workdir={_WORKDIR}', '--data=digits')
    self.assertEqual(out.returncode, 0, out.stderr)
    printed = _printed(out.stdout)
    for r in _records(_WORKDIR):
      self.assertEqual(printed[(r['variant'], r['seed'])], [f"{100 * r['test_accuracy']:.2f}"])

  def test_bad_input_is_one_line_with_status_2(self):
    folder = _tempdir(self)
    wrong = os.path.join(folder, 'wide.npz')
    np.savez(wrong, x_train=np.zeros((4, 5, 5), np.uint8), y_train=np.arange(4) % 2,
             x_test=np.zeros((3, 5, 5), np.uint8), y_test=np.arange(3) % 2)
    many = os.path.join(folder, 'many_classes.npz')
    np.savez(many, x_train=np.zeros((4, 8, 8)), y_train=np.arange(4),
             x_test=np.zeros((3, 8, 8)), y_test=np.array([0, 1, 12]))
    cases = [
        ((), '--workdir is required'),
        ((f'--workdir={folder}/absent',), 'is not a folder'),
        ((f'--workdir={folder}',), 'has no readable config.json'),
        ((f'--workdir={_WORKDIR}', f'--data=npz:{wrong}'),
         'its examples are (5, 5, 1), which the model of baseline seed 0 does not take'),
        ((f'--workdir={_WORKDIR}', f'--data=npz:{many}'),
         'has test labels up to 12; the model of baseline seed 0 has 10 classes'),
        ((f'--workdir={_WORKDIR}', '--data=cifar'), "data.name='cifar'"),
        ((f'--workdir={_WORKDIR}', '--nosuchflag'), 'nosuchflag'),
        ((f'--workdir={_WORKDIR}', 'extra'), "unexpected arguments ['extra']"),
    ]
    for args, fragment in cases:
      with self.subTest(args=args):
        out = run_evaluate(*args)
        self.assertEqual(out.returncode, 2, out.stderr)
        errors = [l for l in out.stderr.splitlines() if 'error' in l]
        self.assertLen(errors, 1, out.stderr)
        self.assertTrue(errors[0].startswith('regjax.evaluate: error: '), errors[0])
        self.assertIn(fragment, errors[0])
        self.assertEqual(out.stdout, '')


class StandardizedWorkdirTest(absltest.TestCase):

  def test_reevaluation_standardizes_like_the_run(self):
    config = load_config('configs/base.py', 'smoke')
    config.data.standardize = True
    workdir = _tempdir(self)
    experiment.run(config, workdir, log=lambda line: None, checkpoint_every_s=None)
    rows = evaluate.evaluate_workdir(workdir)
    records = _records(workdir)
    self.assertLen(rows, 2)
    for row, record in zip(rows, records, strict=True):
      self.assertEqual(row['test_accuracy'], record['test_accuracy'])
      self.assertEqual(row['test_loss'], record['test_loss'])
    # Without the statistics the same weights score otherwise: standardization counts.
    model, variables, run_config = regjax.load_run(workdir, 'baseline', 0)
    self.assertTrue(run_config.data.standardize)
    ds = data.load_dataset(run_config.data)
    raw = evaluate.evaluate(model, variables, ds.test, ds.y_test)
    self.assertNotEqual(raw['loss'], rows[0]['test_loss'])


class LoadRunTest(absltest.TestCase):

  def test_returns_the_reported_model_weights_and_config(self):
    model, variables, config = regjax.load_run(_WORKDIR, 'l2_1e-2', 1)
    record = next(r for r in _records(_WORKDIR)
                  if (r['variant'], r['seed']) == ('l2_1e-2', 1))
    self.assertEqual(config.penalty.l2, 1e-2)
    self.assertEqual(config.optimizer.weight_decay, 0.0)
    self.assertEqual(tuple(config.model.widths), (32, 32))  # :smoke's widths.
    self.assertEqual(variables['params']['Dense_2']['kernel'].shape, (32, 10))
    self.assertEqual(model.num_classes, 10)
    # The weights file, read with flax alone, is what load_run returns.
    path = os.path.join(_WORKDIR, record['run_dir'], 'variables.msgpack')
    with open(path, 'rb') as f:
      exported = flax.serialization.msgpack_restore(f.read())
    np.testing.assert_array_equal(exported['params']['Dense_0']['kernel'],
                                  variables['params']['Dense_0']['kernel'])
    # Those weights score the recorded test accuracy.
    ds = data.load_dataset(config.data)
    logits = model.apply(variables, ds.x_test, train=False)
    self.assertEqual(np.mean(np.argmax(logits, -1) == ds.y_test), record['test_accuracy'])

  def test_a_tuned_run_loads_its_chosen_point_and_split(self):
    workdir = _tempdir(self)
    result = experiment.run(load_config('configs/l2.py', 'smoke'), workdir,
                            log=lambda line: None, checkpoint_every_s=None)
    record = next(r for r in result['records'] if (r['variant'], r['seed']) == ('l2', 1))
    model, variables, config = regjax.load_run(workdir, 'l2', 1)
    self.assertEqual(config.penalty.l2, record['chosen']['penalty.l2'])
    self.assertEqual(config.data.split_seed, 1)  # Its replicate's own split.
    ds = data.load_dataset(config.data)
    other = config.data.copy_and_resolve_references()
    other.split_seed = 0
    self.assertFalse(np.array_equal(ds.val_idx, data.load_dataset(other).val_idx))
    logits = model.apply(variables, ds.x_test, train=False)
    self.assertAlmostEqual(float(np.mean(np.argmax(logits, -1) == ds.y_test)),
                           record['test_accuracy'], places=6)
    # And its validation accuracy too: the split is the one it trained and chose on.
    logits = model.apply(variables, ds.x_val, train=False)
    self.assertAlmostEqual(float(np.mean(np.argmax(logits, -1) == ds.y_val)),
                           record['val_accuracy'], places=6)

  def test_follows_run_dir_and_applies_chosen(self):
    # A tuned comparison's record points at its chosen grid point's folder and names the
    # chosen values: load_run reads those weights and that config.
    workdir = os.path.join(_tempdir(self), 'tuned')
    shutil.copytree(_WORKDIR, workdir)
    with open(os.path.join(workdir, 'results.json')) as f:
      results = json.load(f)
    record = next(r for r in results['records'] if (r['variant'], r['seed']) == ('l2_1e-3', 0))
    point = os.path.join('runs', 'l2_1e-3', 'seed_0', 'point_5')
    shutil.copytree(os.path.join(workdir, record['run_dir']), os.path.join(workdir, point))
    scaled = workdir_lib.load_variables(os.path.join(workdir, point))
    scaled['params']['Dense_0']['kernel'] = scaled['params']['Dense_0']['kernel'] * 3
    workdir_lib.save_variables(os.path.join(workdir, point), scaled)
    record.update(run_dir=point, chosen={'penalty.l2': 0.03, 'model.widths': [32, 32]})
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      json.dump(results, f)
    _, variables, config = regjax.load_run(workdir, 'l2_1e-3', 0)
    self.assertEqual(config.penalty.l2, 0.03)
    self.assertEqual(config.model.widths, (32, 32))
    np.testing.assert_array_equal(variables['params']['Dense_0']['kernel'],
                                  scaled['params']['Dense_0']['kernel'])
    _, original, _ = regjax.load_run(workdir, 'l2_1e-3', 1)  # Untouched: its own folder.
    self.assertFalse(np.array_equal(original['params']['Dense_0']['kernel'],
                                    scaled['params']['Dense_0']['kernel']))

  def test_finished_runs_are_found_before_results_json(self):
    workdir = os.path.join(_tempdir(self), 'unfinished')
    shutil.copytree(_WORKDIR, workdir)
    os.remove(os.path.join(workdir, 'results.json'))
    shutil.rmtree(os.path.join(workdir, 'runs', 'decay_1'))  # Not finished yet.
    found = workdir_lib.finished_records(workdir)
    expected = [r for r in _records(_WORKDIR) if r['variant'] != 'decay_1']
    self.assertEqual([(r['variant'], r['seed'], r['test_accuracy']) for r in found],
                     [(r['variant'], r['seed'], r['test_accuracy']) for r in expected])
    with self.assertRaisesRegex(ConfigError, r'no finished run in .*: baseline, decay_1e-1'):
      regjax.load_run(workdir, 'decay_1', 0)

  def test_unknown_names_are_one_line_errors_naming_what_exists(self):
    cases = [
        ((_WORKDIR, 'l3', 0), r"^variant='l3': no such variant in .*; finished variants: "
                              r'baseline, decay_1, decay_1e-1, l2_1e-2, l2_1e-3, l2_3e-2$'),
        ((_WORKDIR, 'baseline', 7), r"^seed=7: no finished run of baseline .*finished "
                                    r'seeds: 0, 1$'),
        ((os.path.join(_WORKDIR, 'absent'), 'baseline', 0), r'^workdir=.*is not a folder'),
        ((os.path.join(_WORKDIR, 'runs'), 'baseline', 0),
         r'^workdir=.*has no readable config\.json .*holds: baseline, decay_1'),
    ]
    for args, pattern in cases:
      with self.subTest(args=args[1:]):
        with self.assertRaisesRegex(ConfigError, pattern) as cm:
          regjax.load_run(*args)
        self.assertNotIn('\n', str(cm.exception))


class LazyImportTest(absltest.TestCase):

  def test_import_regjax_loads_jax_only_for_load_run(self):
    code = ('import sys, regjax; print("jax" in sys.modules); regjax.load_run; '
            'print("jax" in sys.modules); print(regjax.load_run.__module__)')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                         text=True, check=True, env=dict(os.environ, PYTHONPATH=ROOT))
    self.assertEqual(out.stdout.split(), ['False', 'True', 'regjax.evaluate'])
    with self.assertRaises(AttributeError):
      regjax.no_such_name  # pylint: disable=pointless-statement


if __name__ == '__main__':
  absltest.main()
