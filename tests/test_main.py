"""The entrypoint: every config runs in :smoke form; outputs parse; bad input is one line."""

import csv
import glob
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

from regjax import experiment
from regjax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'configs', '*.py')))


def load_config(path: str, arg: str | None = None):
  spec = importlib.util.spec_from_file_location('cfg_' + os.path.basename(path)[:-3],
                                                os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def run_cli(*args: str, cwd: str = ROOT) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, '-m', 'regjax.main', *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=600)


class ConfigsTest(parameterized.TestCase):

  def test_every_config_is_found(self):
    for name in ('base', 'l1', 'l2', 'dropout', 'batchnorm', 'early_stopping', 'maxnorm',
                 'compare_all', 'notebook'):
      self.assertIn(f'configs/{name}.py', CONFIGS)

  @parameterized.parameters(*CONFIGS)
  def test_docstring_starts_with_its_command(self, path):
    spec = importlib.util.spec_from_file_location('doc', os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first = module.__doc__.strip().splitlines()
    self.assertIn(f'python -m regjax.main --config={path}', '\n'.join(first[:4]))
    self.assertRegex(module.__doc__, r'(?m)^Shows\b')  # What the comparison showed.

  @parameterized.parameters(*CONFIGS)
  def test_smoke_runs_and_writes_parsable_outputs(self, path):
    config = load_config(path, 'smoke')
    workdir = tempfile.mkdtemp()
    result = experiment.run(config, workdir, log=lambda line: None)
    names = [n.strip() for n in config.order.split(',')]
    self.assertEqual([r['variant'] for r in result['rows']], names)
    self.assertLen(result['records'], len(names) * config.seeds)
    for name in names:
      self.assertIn(name, result['table'])
    with open(os.path.join(workdir, 'results.json')) as f:
      results = json.load(f)
    self.assertEqual(results['baseline'], names[0])
    self.assertLen(results['records'], len(names) * config.seeds)
    with open(os.path.join(workdir, 'results.csv')) as f:
      self.assertEqual([r['variant'] for r in csv.DictReader(f)], names)
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      lines = [json.loads(line) for line in f]
    # Every run's epochs (all grid points of a tuned variant); the reported run's count.
    for r in result['records']:
      mine = [l for l in lines if (l['variant'], l['seed'], l.get('point')) ==
              (r['variant'], r['seed'], r.get('chosen_index'))]
      self.assertLen(mine, r['epochs_run'])
    with open(os.path.join(workdir, 'config.json')) as f:
      self.assertEqual(json.load(f)['order'], config.order)
    with open(os.path.join(workdir, 'curves.png'), 'rb') as f:
      self.assertEqual(f.read(8), b'\x89PNG\r\n\x1a\n')


class RunTest(absltest.TestCase):

  def test_paired_seeds_give_every_variant_the_same_start(self):
    # Two identical variants must produce identical numbers seed by seed.
    config = load_config('configs/base.py', 'smoke')
    from regjax import variants
    variants.set_variants(config, baseline={}, same={})
    result = experiment.run(config, tempfile.mkdtemp(), log=lambda line: None)
    base = [r['test_accuracy'] for r in result['records'] if r['variant'] == 'baseline']
    same = [r['test_accuracy'] for r in result['records'] if r['variant'] == 'same']
    self.assertEqual(base, same)
    self.assertEqual(result['rows'][1]['diff_mean'], 0.0)
    self.assertFalse(result['rows'][1]['significant'])

  def test_vectorized_comparison_matches_run_by_run(self):
    # configs/l2.py's variants and grid points differ only in strengths and the learning
    # rate: one vmapped program trains them all.
    results = {}
    for mode in ('never', 'always'):
      config = load_config('configs/l2.py', 'smoke')
      config.train.vectorize = mode
      lines = []
      results[mode] = experiment.run(config, tempfile.mkdtemp(), log=lines.append)
      self.assertEqual(any('runs as 1 program' in line for line in lines), mode == 'always')
    for one, many in zip(results['never']['records'], results['always']['records']):
      self.assertEqual((one['variant'], one['seed']), (many['variant'], many['seed']))
      self.assertEqual(one['best_epoch'], many['best_epoch'])
      self.assertEqual(one['stop_epoch'], many['stop_epoch'])
      self.assertAlmostEqual(one['test_loss'], many['test_loss'], places=4)
      self.assertAlmostEqual(one['test_accuracy'], many['test_accuracy'], delta=2 / 450)

  def test_bad_variant_fails_before_anything_is_written(self):
    config = load_config('tests/configs/fixed_l2.py', 'smoke')
    with config.unlocked():
      config.variants['decay_1'].optimizer.weight_decay = -1.0
    workdir = os.path.join(tempfile.mkdtemp(), 'out')
    with self.assertRaisesRegex(ConfigError, r'optimizer.weight_decay=-1.0'):
      experiment.run(config, workdir, log=lambda line: None)
    self.assertFalse(os.path.exists(workdir))

  def test_only_runs_a_subset_with_its_first_as_baseline(self):
    config = load_config('tests/configs/fixed_l2.py', 'smoke')
    config.only = 'l2_1e-2,baseline'
    config.seeds = 1
    result = experiment.run(config, tempfile.mkdtemp(), log=lambda line: None)
    self.assertEqual([r['variant'] for r in result['rows']], ['l2_1e-2', 'baseline'])

  def test_existing_results_are_never_overwritten(self):
    # A workdir with results of another (or an unknown) config is refused, untouched;
    # only the same config resumes it (tests/test_resume.py).
    config = load_config('configs/base.py', 'smoke')
    for earlier_config in (None, {'seed': 123}):
      workdir = tempfile.mkdtemp()
      with open(os.path.join(workdir, 'results.json'), 'w') as f:
        f.write('{"earlier": true}')
      if earlier_config is not None:
        with open(os.path.join(workdir, 'config.json'), 'w') as f:
          json.dump(earlier_config, f)
      with self.assertRaisesRegex(ConfigError, 'holds (results of an earlier run|the results '
                                  'of a different config)'):
        experiment.run(config, workdir, log=lambda line: None)
      with open(os.path.join(workdir, 'results.json')) as f:
        self.assertEqual(json.load(f), {'earlier': True})


class CommandLineTest(parameterized.TestCase):

  def test_command_prints_table_and_writes_files(self):
    workdir = os.path.join(tempfile.mkdtemp(), 'run')
    proc = run_cli('--config=configs/base.py:smoke,seeds=2', f'--workdir={workdir}',
                   '--config.train.epochs=2', '--config.model.widths=(16,)')
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    self.assertIn('baseline', proc.stdout)
    self.assertIn('test acc', proc.stdout)
    self.assertIn('[2/2] baseline seed 1', proc.stderr)  # Progress goes to stderr.
    self.assertIn('Computing on 1 x cpu (cpu), JAX ', proc.stderr)
    for name in ('config.json', 'metrics.jsonl', 'results.json', 'results.csv', 'curves.png'):
      self.assertTrue(os.path.exists(os.path.join(workdir, name)), name)
    with open(os.path.join(workdir, 'config.json')) as f:
      config = json.load(f)
    self.assertEqual(config['train']['epochs'], 2)
    self.assertEqual(config['model']['widths'], [16])
    # Where the numbers were computed travels with them (GPU matmuls are TF32 by default).
    with open(os.path.join(workdir, 'results.json')) as f:
      env = json.load(f)['environment']
    self.assertEqual((env['backend'], env['devices'], env['processes']), ('cpu', 1, 1))
    self.assertEqual(env['matmul_precision'],  # regjax leaves JAX's setting alone.
                     os.environ.get('JAX_DEFAULT_MATMUL_PRECISION'))
    self.assertRegex(env['jax'], r'^\d+\.\d+')
    self.assertRegex(env['flax'], r'^\d+\.\d+')

  @parameterized.named_parameters(
      ('unknown_config_file', ['--config=configs/nope.py'], 'no such config file'),
      ('unknown_field', ['--config=configs/base.py', '--config.penalty.l3=1'],
       '--config.penalty.l3: no such field; fields of penalty: l1, l2, mask'),
      ('unknown_variant', ['--config=configs/l2.py:smoke', '--config.only=l2_9'],
       "only='l2_9': unknown variant"),
      ('malformed_arg_value', ['--config=configs/l2.py:seeds=many'],
       "config arg seeds='many': must be an integer"),
      ('unknown_arg', ['--config=configs/l2.py:fast'], "config arg='fast': unknown option"),
      ('bad_type', ['--config=configs/base.py', '--config.model.dropout_rate=high'],
       '--config.model.dropout_rate=high'),
      ('dropout_rate_one', ['--config=configs/base.py', '--config.model.dropout_rate=1.0'],
       'model.dropout_rate=1.0: a drop probability must be in [0, 1)'),
      ('negative_lambda', ['--config=configs/base.py', '--config.penalty.l2=-0.1'],
       'penalty.l2=-0.1'),
      ('unknown_optimizer', ['--config=configs/base.py', '--config.optimizer.name=adagrad'],
       "optimizer.name='adagrad'"),
      ('unknown_dataset', ['--config=configs/base.py', '--config.data.name=imagenet'],
       "data.name='imagenet'"),
      ('missing_idx_dir', ['--config=configs/base.py', '--config.data.name=mnist',
                           '--config.data.dir=/nonexistent/mnist'], "data.dir='/nonexistent"),
      ('stray_argument', ['--config=configs/base.py', 'l2'], 'unexpected arguments'),
      ('bad_vectorize', ['--config=configs/base.py', '--config.train.vectorize=sometimes'],
       "train.vectorize='sometimes': one of auto, always, never"),
  )
  def test_bad_input_is_one_line_and_nonzero(self, args, expected):
    workdir = os.path.join(tempfile.mkdtemp(), 'run')
    proc = run_cli(*args, f'--workdir={workdir}')
    self.assertEqual(proc.returncode, 2, proc.stderr)
    self.assertNotIn('Traceback', proc.stderr)
    lines = proc.stderr.strip().splitlines()
    self.assertLen(lines, 1, proc.stderr)
    self.assertStartsWith(lines[0], 'regjax: error: ')
    self.assertIn(expected, lines[0])
    self.assertFalse(os.path.exists(workdir))

  def test_unwritable_workdir(self):
    blocker = os.path.join(tempfile.mkdtemp(), 'a-file')
    with open(blocker, 'w') as f:
      f.write('not a folder')
    proc = run_cli('--config=configs/base.py:smoke', f'--workdir={blocker}/run')
    self.assertEqual(proc.returncode, 2, proc.stderr)
    self.assertNotIn('Traceback', proc.stderr)
    self.assertRegex(proc.stderr.strip(), r"^regjax: error: workdir='.*a-file/run': cannot "
                     r'be written \(Not a directory\)$')


if __name__ == '__main__':
  absltest.main()
