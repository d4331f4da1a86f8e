"""The command line of a researcher's daily loop: variant overrides, --variant,
--show_config, --help, and the messages for a mistyped --config or --workdir."""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

from regjax import config_help
from regjax import main
from regjax import schema
from regjax import variants
from regjax.errors import ConfigError
from tests.test_main import ROOT, load_config, run_cli

L1_DROP = 'l1_drop:penalty.l1=1e-4,model.dropout_rate=0.2'


def _one_error_line(test: absltest.TestCase, proc: subprocess.CompletedProcess) -> str:
  test.assertEqual(proc.returncode, 2, proc.stderr)
  test.assertNotIn('Traceback', proc.stderr)
  lines = proc.stderr.strip().splitlines()
  test.assertLen(lines, 1, proc.stderr)
  test.assertStartsWith(lines[0], 'regjax: error: ')
  return lines[0]


class OverrideSyntaxTest(parameterized.TestCase):

  @parameterized.parameters(
      ('--config.variants.l2_1e-2.penalty.l2=0.02',
       "--config.variants['l2_1e-2'].penalty.l2=0.02"),
      ('--config.variants.1e-3.model.dropout_rate=0.4',  # A name that starts with a digit.
       "--config.variants['1e-3'].model.dropout_rate=0.4"),
      ('--config.variants.lambda.penalty.l1=1',  # A Python keyword.
       "--config.variants['lambda'].penalty.l1=1"),
      ('--noconfig.variants.bn-1.model.batch_norm',
       "--noconfig.variants['bn-1'].model.batch_norm"),
      ("--config.variants['l2_1e-2'].penalty.l2=1", None),  # Already ml_collections' form.
      ('--config.train.epochs=5', None),
      ('--config.variants.baseline.seed=1', None),
      ('--workdir=runs/l2_1e-2.x', None),
  )
  def test_rewrite_overrides(self, arg, expected):
    rewritten = main.rewrite_overrides(['prog', arg])
    self.assertEqual(rewritten, ['prog', expected or arg])

  def test_dotted_override_of_l2_1e_2_takes_effect(self):
    proc = run_cli('--config=tests/configs/fixed_l2.py:smoke', '--config.variants.l2_1e-2.penalty.l2=0.02',
                   '--config.variants.decay_1e-1.optimizer.weight_decay=0.5', '--show_config')
    self.assertEqual(proc.returncode, 0, proc.stderr)
    lines = proc.stdout.splitlines()
    self.assertIn('l2_1e-2:penalty.l2=0.02', lines)
    self.assertIn('decay_1e-1:optimizer.weight_decay=0.5', lines)
    self.assertIn('l2_1e-3:penalty.l2=0.001', lines)  # The others keep their values.
    self.assertIn('penalty.l2 = 0.0', proc.stdout)  # The base is not touched.

  @parameterized.named_parameters(
      ('unknown_variant', '--config.variants.l2_9.penalty.l2=1',
       '--config.variants.l2_9.penalty.l2: no such variant; variants: baseline, l2_1e-3, '
       'l2_1e-2, l2_3e-2, decay_1e-1, decay_1 (add one with --variant=l2_9:FIELD=VALUE,...)'),
      ('unknown_field', '--config.variants.l2_1e-2.penalty.l3=1',
       '--config.variants.l2_1e-2.penalty.l3: no such field penalty.l3; fields of penalty: '
       'l1, l2, mask'),
      ('field_the_variant_does_not_set', '--config.variants.l2_1e-2.model.dropout_rate=0.2',
       'variant l2_1e-2 does not set model.dropout_rate (it sets penalty.l2); add it with '
       '--variant=l2_1e-2:model.dropout_rate=VALUE'),
      ('bad_value', '--config.variants.l2_1e-2.penalty.l2=strong',
       'flag --config.variants.l2_1e-2.penalty.l2=strong: could not convert string to float'),
  )
  def test_bad_variant_override_is_one_line(self, arg, expected):
    workdir = os.path.join(tempfile.mkdtemp(), 'run')
    line = _one_error_line(self, run_cli('--config=tests/configs/fixed_l2.py:smoke', arg,
                                         f'--workdir={workdir}'))
    self.assertIn(expected, line)
    self.assertFalse(os.path.exists(workdir))


class VariantSpecTest(parameterized.TestCase):

  @parameterized.parameters(
      ('1e-4', 1e-4), ('3', 3), ('True', True), ('false', False), ('(256,256)', (256, 256)),
      ('[8, 8]', (8, 8)), ("'adamw'", 'adamw'), ('adamw', 'adamw'), ('kernel$', 'kernel$'),
      ('None', None), ('', ''))
  def test_parse_value(self, text, value):
    self.assertEqual(variants.parse_value(text), value)
    self.assertEqual(type(variants.parse_value(text)), type(value))
    self.assertEqual(variants.parse_value(variants.value_text(value)), value)

  def test_parse_spec_splits_outside_brackets_and_quotes(self):
    name, fields = variants.parse_spec(
        "wide: model.widths=(64, 64), penalty.mask='kernel|bias,x' ,optimizer.name=adamw")
    self.assertEqual(name, 'wide')
    self.assertEqual(fields, {'model.widths': (64, 64), 'penalty.mask': 'kernel|bias,x',
                              'optimizer.name': 'adamw'})

  def test_new_variant_runs_last_and_combines_with_only(self):
    config = load_config('tests/configs/fixed_l2.py', 'smoke')
    config.only = 'baseline,l1_drop'
    config.lock()
    variants.apply_spec(config, L1_DROP)
    self.assertEqual(config.order.split(',')[0], 'baseline')
    self.assertEqual(config.order.split(',')[-1], 'l1_drop')
    self.assertEqual(variants.names(config), ['baseline', 'l1_drop'])
    resolved = variants.variant_config(config, 'l1_drop')
    self.assertEqual((resolved.penalty.l1, resolved.model.dropout_rate), (1e-4, 0.2))
    self.assertEqual(resolved.penalty.l2, 0.0)  # Not l2_1e-2's.

  def test_existing_variant_keeps_the_fields_it_does_not_name(self):
    config = load_config('tests/configs/fixed_l2.py', 'smoke')
    order = config.order
    variants.apply_spec(config, 'l2_1e-2:model.dropout_rate=0.1')
    variants.apply_spec(config, 'l2_1e-2:penalty.l2=0.05')
    self.assertEqual(config.order, order)
    self.assertEqual(variants.overrides(config, 'l2_1e-2'),
                     {'model.dropout_rate': 0.1, 'penalty.l2': 0.05})

  @parameterized.named_parameters(
      ('unknown_field', 'x:penalty.l3=1',
       "--variant='x:penalty.l3=1': no such field penalty.l3; fields of penalty: l1, l2, mask"),
      ('unknown_section', 'x:regularizer.l2=1', 'no such field regularizer.l2; fields of the '
       'config: data, early_stopping, model, optimizer, penalty, seed, train'),
      ('comparison_field', 'x:order=a', 'no such field order'),
      ('section', 'x:penalty=1', 'penalty is a section; set its fields: penalty.l1, '),
      ('wrong_type', 'x:model.dropout_rate=high',
       "model.dropout_rate='high': must be a number"),
      ('wrong_tuple', 'x:model.widths=64', 'model.widths=64: must be a tuple of integers'),
      ('int_for_bool', 'x:model.batch_norm=1', 'model.batch_norm=1: must be true or false'),
      ('no_value', 'x:penalty.l1', "'penalty.l1' is not FIELD=VALUE"),
      ('bad_name', 'a,b:penalty.l1=1', 'expected NAME:FIELD=VALUE,... with a NAME of'),
  )
  def test_bad_spec_names_the_flag_and_changes_nothing(self, spec, expected):
    config = load_config('tests/configs/fixed_l2.py', 'smoke')
    before = config.to_json()
    with self.assertRaises(ConfigError) as caught:
      variants.apply_spec(config, spec)
    self.assertStartsWith(str(caught.exception), f'--variant={spec!r}: ')
    self.assertIn(expected, str(caught.exception))
    self.assertNotIn('\n', str(caught.exception))
    self.assertEqual(config.to_json(), before)


class ConfigHelpTest(absltest.TestCase):

  SOURCE = '\n'.join([
      'def default_config():',
      '  c = ConfigDict()',
      '  c.seed = 0  # Base seed.',
      '  c.data = ConfigDict()  # Where the examples come from.',
      '  c.data.name = (',
      "      'digits')  # digits | mnist",
      '  c.data.split = 0  # Seeds the split (fixed',
      '                    # across seeds).',
      '  # Not a continuation: at the statement\'s own indentation.',
      '  c.data.size = 0',
      '  c.data.dir = ""',
      '  return c',
  ])

  def test_parse_comments(self):
    self.assertEqual(config_help.parse_comments(self.SOURCE), {
        'seed': 'Base seed.', 'data': 'Where the examples come from.',
        'data.name': 'digits | mnist', 'data.split': 'Seeds the split (fixed across seeds).',
        'data.size': "Not a continuation: at the statement's own indentation.",
        'data.dir': ''})

  def test_schema_comments_join_continuation_lines_and_take_extra(self):
    comments = config_help.schema_comments({'train.new_field': 'Added by a loop.',
                                            'seed': 'Replaced.'})
    self.assertEqual(comments['data.split_seed'],
                     'Seeds the validation split, subsample and label noise; each replicate '
                     'adds its seed when `resample` (all variants of a replicate see the '
                     'same data).')
    self.assertTrue(comments['train.vectorize'].endswith('(on a CPU it measured no faster).'))
    # Registered regularizers' fields take their registration's doc.
    self.assertEqual(comments['penalty.l1'], 'l1 * sum |w| over the masked weights (a loss term).')
    self.assertEqual(comments['train.new_field'], 'Added by a loop.')
    self.assertEqual(comments['seed'], 'Replaced.')
    # Every value field of the schema has its comment.
    defaults = schema.default_config()
    for section in ('data', 'model', 'penalty', 'optimizer', 'early_stopping', 'train'):
      for key in defaults[section]:
        self.assertNotEqual(comments.get(f'{section}.{key}', ''), '', f'{section}.{key}')

  def test_format_config(self):
    config = load_config('tests/configs/fixed_l2.py', 'smoke')
    variants.apply_spec(config, L1_DROP)
    text = config_help.format_config(config, config_help.schema_comments(
        {'model.widths': 'Widths, from the extra mapping.'}), width=90)
    lines = text.splitlines()
    line = next(line for line in lines if line.startswith('penalty.l2 = 0.0 '))
    self.assertRegex(line, r'^penalty\.l2 = 0\.0 +# \(l2 / 2\) \* sum w\^2')
    self.assertRegex(text, r'(?m)^model\.widths = \(32, 32\) +# Widths, from the extra')
    self.assertRegex(text, r'(?m)^seeds = 2 +# Number of replicates per variant')
    self.assertRegex(text, r'(?m)^\[penalty\] +# Coupled: terms added to the loss\.$')
    self.assertIn('l2_1e-2:penalty.l2=0.01', lines)
    self.assertIn('l1_drop:model.dropout_rate=0.2,penalty.l1=0.0001', lines)
    self.assertLess(lines.index('baseline:'), lines.index('l1_drop:model.dropout_rate=0.2,'
                                                          'penalty.l1=0.0001'))
    for line in lines:  # Comments wrap; only a long value may pass the width.
      if len(line) > 90:
        self.assertNotIn('#', line, line)
    # What is printed for a variant is what --variant reads back.
    name, fields = variants.parse_spec(config_help.variant_text(config, 'l1_drop'))
    self.assertEqual(fields, variants.overrides(config, 'l1_drop'))


class CommandLineTest(parameterized.TestCase):

  def test_variant_adds_a_run_to_the_results_and_resumes(self):
    workdir = os.path.join(tempfile.mkdtemp(), 'run')
    args = ('--config=configs/l2.py:smoke', f'--variant={L1_DROP}',
            '--config.only=baseline,l1_drop', '--config.train.epochs=2',
            f'--workdir={workdir}', '--compilation_cache=')
    proc = run_cli(*args)
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    self.assertRegex(proc.stdout, r'(?m)^l1_drop ')  # A row of the table.
    with open(os.path.join(workdir, 'results.json')) as f:
      results = json.load(f)
    self.assertEqual([r['variant'] for r in results['summary']], ['baseline', 'l1_drop'])
    with open(os.path.join(workdir, 'config.json')) as f:
      config = json.load(f)
    self.assertEqual(config['variants']['l1_drop'],
                     {'model': {'dropout_rate': 0.2}, 'penalty': {'l1': 0.0001}})
    self.assertTrue(config['order'].endswith(',l1_drop'), config['order'])
    # The same command finds its own config in config.json: it resumes, trains nothing.
    again = run_cli(*args)
    self.assertEqual(again.returncode, 0, again.stderr[-2000:])
    # The baseline's 2 grid points (:smoke keeps both ends) and l1_drop, x 2 seeds.
    self.assertEqual(again.stderr.count('; done earlier'), 6, again.stderr)

  def test_variant_with_unknown_field_is_one_line(self):
    workdir = os.path.join(tempfile.mkdtemp(), 'run')
    line = _one_error_line(self, run_cli('--config=configs/l2.py:smoke',
                                         '--variant=l1_drop:penalty.l3=1e-4',
                                         f'--workdir={workdir}'))
    self.assertEqual(line, "regjax: error: --variant='l1_drop:penalty.l3=1e-4': no such "
                     'field penalty.l3; fields of penalty: l1, l2, mask (see regjax/schema.py)')
    self.assertFalse(os.path.exists(workdir))

  def test_show_config_prints_comments_and_writes_nothing(self):
    cwd = tempfile.mkdtemp()  # No --workdir: the default would be runs/ in here.
    env = dict(os.environ, PYTHONPATH=ROOT, XDG_CACHE_HOME=os.path.join(cwd, 'cache'))
    proc = subprocess.run(
        [sys.executable, '-m', 'regjax.main', f'--config={ROOT}/tests/configs/fixed_l2.py',
         f'--variant={L1_DROP}', '--config.train.epochs=7', '--show_config'],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertEqual(proc.stderr, '')
    self.assertRegex(proc.stdout, r'(?m)^train\.epochs = 7 +# Maximum epochs\.$')
    self.assertRegex(proc.stdout, r'(?m)^penalty\.l1 = 0\.0 +# l1 \* sum \|w\| over the masked')
    self.assertIn('\nl1_drop:model.dropout_rate=0.2,penalty.l1=0.0001\n', proc.stdout)
    self.assertEqual(os.listdir(cwd), [])

  def test_help_with_a_config_lists_its_fields(self):
    proc = run_cli('--config=tests/configs/fixed_l2.py', '--help')
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn('--[no]show_config', proc.stdout)
    self.assertIn('--variant', proc.stdout)
    self.assertRegex(proc.stdout, r'(?m)^seeds = 3 +# Number of replicates per variant')
    self.assertRegex(proc.stdout, r'(?m)^data\.label_noise = 0\.3 +# Share of training')
    self.assertIn('\nl2_1e-2:penalty.l2=0.01\n', proc.stdout)

  def test_plain_help_points_to_show_config(self):
    proc = run_cli('--help')
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn('--[no]show_config', proc.stdout)
    self.assertIn('Add --config=FILE to --help, or run with --show_config', proc.stdout)
    self.assertNotIn('seeds = ', proc.stdout)

  @parameterized.parameters(
      ('configs/l2', 'did you mean --config=configs/l2.py'),
      ('configs/l2:smoke', 'did you mean --config=configs/l2.py:smoke'),
      ('l2.py', 'did you mean --config=configs/l2.py'),
  )
  def test_config_without_py_suggests_the_file(self, path, expected):
    line = _one_error_line(self, run_cli(f'--config={path}'))
    self.assertEqual(line, f'regjax: error: --config={path!r}: no such config file; {expected}')

  def test_workdir_that_is_a_file(self):
    path = os.path.join(tempfile.mkdtemp(), 'results.csv')
    with open(path, 'w') as f:
      f.write('kept')
    line = _one_error_line(self, run_cli('--config=configs/base.py:smoke',
                                         f'--workdir={path}'))
    self.assertEqual(line, f'regjax: error: workdir={path!r}: is a file; pass a folder (a '
                     'new one, or one that this command wrote before, to resume it)')
    with open(path) as f:
      self.assertEqual(f.read(), 'kept')


if __name__ == '__main__':
  absltest.main()
