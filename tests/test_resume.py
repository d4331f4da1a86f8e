"""Resume: killed (SIGKILL), stopped (SIGTERM / SIGINT) and rerun comparisons end bit for bit
like an uninterrupted one, run by run or as one vmapped program; a workdir is resumed
only by its own config."""

import copy
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest
import numpy as np

from regjax import checkpointing
from regjax import experiment
from regjax import variants
from regjax import workdir as workdir_lib
from regjax.errors import ConfigError
from tests import helpers
from tests.test_main import ROOT, load_config

# One variant, 2 seeds of 200 short epochs (a few ms each) with dropout: long enough to
# be cut mid-run; the compile, not the epochs, is what costs here.
OVERRIDES = {'train.epochs': 200, 'early_stopping.patience': 1000, 'model.dropout_rate': 0.2}
CLI = ['--config=configs/base.py:smoke',
       *(f'--config.{field}={value}' for field, value in OVERRIDES.items())]
# The same comparison as a script that checkpoints whenever the last save is written, so
# that a kill can land in the middle of an asynchronous save.
SCRIPT = ('import sys; from regjax import experiment; from tests import test_resume; '
          'experiment.run(getattr(test_resume, sys.argv[2])(), sys.argv[1], '
          'checkpoint_every_s=0)')


def make_config():
  """The config that CLI gives (config.json of both must be equal to resume)."""
  config = load_config('configs/base.py', 'smoke')
  for dotted, value in OVERRIDES.items():
    section, field = dotted.split('.')
    config[section][field] = value
  return config


def make_vectorized_config():
  """2 variants x 2 seeds as ONE vmapped program of 4 runs. Measured: the 'fast' runs
  stop at epochs 57 and 123 (patience 30; each replicate draws its own split), the others
  run all 200 epochs, so the program shrinks from 4 lanes to 2 on the way."""
  config = make_config()
  config.train.vectorize = 'always'
  config.early_stopping.patience = 30
  variants.set_variants(config, baseline={}, fast={'optimizer.learning_rate': 1e-2})
  return config


def start(*args: str) -> subprocess.Popen:
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(workdir: str, proc: subprocess.Popen, timeout: float = 300) -> None:
  """Returns once the first checkpoint is committed: training is under way."""
  end = time.monotonic() + timeout
  while time.monotonic() < end:
    found = (glob.glob(os.path.join(workdir, 'checkpoints', '*', 'seed_*', '[0-9]*'))
             + glob.glob(os.path.join(workdir, 'checkpoints', 'group-*', '[0-9]*')))
    # A committed one is named by its epoch alone (orbax writes into '<k>.orbax-...-tmp').
    if any(os.path.basename(path).isdigit() for path in found):
      return
    if proc.poll() is not None:
      raise AssertionError(f'finished before a checkpoint: {proc.stderr.read()[-2000:]}')
    time.sleep(0.02)
  raise AssertionError('no checkpoint appeared')


def quiet(line: str) -> None:
  del line


def outcome(workdir: str):
  """(records, summary, metrics rows) of a finished workdir, wall-clock seconds removed."""
  strip = lambda rows: [{k: v for k, v in r.items() if 'seconds' not in k} for r in rows]
  with open(os.path.join(workdir, 'results.json')) as f:
    results = json.load(f)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    metrics = [json.loads(line) for line in f]
  return strip(results['records']), strip(results['summary']), strip(metrics)


def reported_weights(workdir: str) -> dict[str, str]:
  """{run folder: sha256 of its reported weights file} of a finished workdir."""
  snap = helpers.snapshot(workdir)
  return {k: v for k, v in snap.items() if k.endswith(workdir_lib.VARIABLES_FILE)}


class ResumeTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.config = make_config()
    cls.reference = tempfile.mkdtemp()
    experiment.run(cls.config, cls.reference, log=quiet)
    cls.reference_outcome = outcome(cls.reference)
    cls.reference_weights = reported_weights(cls.reference)

  def assert_same_as_reference(self, workdir):
    got = outcome(workdir)
    self.assertLen(got[2], self.config.seeds * self.config.train.epochs)  # No dupes.
    self.assertEqual(got, self.reference_outcome)
    # The reported weights too, bit for bit; and a finished comparison keeps no
    # checkpoints.
    self.assertEqual(reported_weights(workdir), self.reference_weights)
    self.assertFalse(os.path.exists(os.path.join(workdir, 'checkpoints')))

  def test_sigkill_at_a_random_moment_then_resume_is_bitwise_identical(self):
    workdir = tempfile.mkdtemp()
    proc = start('-c', SCRIPT, workdir, 'make_config')
    wait_for_checkpoint(workdir, proc)
    time.sleep(np.random.default_rng(6).uniform(0.0, 1.0))
    proc.kill()
    proc.communicate()
    self.assertEqual(proc.returncode, -signal.SIGKILL)
    # Whatever the moment, every JSON file that exists is complete.
    for path in glob.glob(os.path.join(workdir, '**', '*.json'), recursive=True):
      with open(path) as f:
        json.load(f)
    experiment.run(self.config, workdir, log=quiet)  # Resumed with the default timing.
    self.assert_same_as_reference(workdir)

  def test_sigterm_checkpoints_exits_143_and_resumes_bitwise(self):
    workdir = tempfile.mkdtemp()
    # Saves after every epoch, so that a checkpoint soon says training is under way.
    proc = start('-m', 'regjax.main', *CLI, f'--workdir={workdir}', '--checkpoint_every_s=0')
    wait_for_checkpoint(workdir, proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    self.assertEqual(proc.returncode, 128 + signal.SIGTERM, stderr[-2000:])
    self.assertNotIn('Traceback', stderr)
    last = stderr.strip().splitlines()[-1]
    match = re.fullmatch(
        r'regjax: stopped by SIGTERM in baseline seed 0, checkpointed after (\d+) epochs; '
        r'finished runs are kept. Resume with the same command and --workdir=(.*)', last)
    self.assertIsNotNone(match, last)
    self.assertEqual(match.group(2), workdir)
    # The epoch in flight finished and was saved, whatever the timed saves had done.
    epochs_done = int(match.group(1))
    self.assertBetween(epochs_done, 1, self.config.train.epochs - 1)
    self.assertIn(str(epochs_done), os.listdir(
        workdir_lib.checkpoint_dir(workdir, [workdir_lib.run_dir(workdir, 'baseline', 0)])))
    self.assertFalse(os.path.exists(os.path.join(workdir, 'results.json')))
    # Resumed by the same command (here in-process: config.json must match).
    experiment.run(self.config, workdir, log=quiet)
    self.assert_same_as_reference(workdir)

  def test_sigint_in_process_stops_with_130_and_resumes_bitwise(self):
    workdir = tempfile.mkdtemp()
    lines = []

    def on_epoch(label, row):
      if label == 'baseline seed 1' and row['epoch'] == 10:
        os.kill(os.getpid(), signal.SIGINT)  # As Ctrl-C would, in the second run.

    with self.assertRaises(checkpointing.Preempted) as ctx:
      experiment.run(self.config, workdir, log=lines.append, on_epoch=on_epoch)
    self.assertEqual(ctx.exception.code, 130)
    self.assertEqual(ctx.exception.message, lines[-1])
    # Stopped right after the epoch that was running: epochs 0..10 are saved.
    self.assertIn('in baseline seed 1, checkpointed after 11 epochs', lines[-1])
    lines.clear()
    experiment.run(self.config, workdir, log=lines.append)
    self.assertIn('[baseline seed 1] resuming from its checkpoint after 11 epochs',
                  '\n'.join(lines))
    self.assertTrue(lines[0].startswith('Computing on '), lines[0])  # Where it computes.
    self.assertIn('2 runs, one after another', lines[1])  # And how runs are placed.
    self.assertIn('[1/2] baseline seed 0: test_acc', lines[2])
    self.assertIn('; done earlier', lines[2])
    self.assert_same_as_reference(workdir)

  def test_same_config_twice_gives_identical_numbers_then_just_reports(self):
    workdir = tempfile.mkdtemp()
    first = experiment.run(self.config, workdir, log=quiet)
    self.assert_same_as_reference(workdir)
    before = helpers.snapshot(workdir)
    lines = []
    again = experiment.run(self.config, workdir, log=lines.append)
    self.assertEqual(again['table'], first['table'])
    # Where it computes and how, then one line per finished run: no training, no
    # progress lines.
    self.assertLen(lines, 2 + self.config.seeds)
    self.assertTrue(lines[0].startswith('Computing on '), lines[0])
    self.assertTrue(all('; done earlier' in line for line in lines[2:]), lines)
    after = helpers.snapshot(workdir)
    for name in ('results.json', 'metrics.jsonl', 'config.json'):
      self.assertEqual(after[name], before[name])
    self.assertEqual({k: v for k, v in after.items() if k.startswith('runs')},
                     {k: v for k, v in before.items() if k.startswith('runs')})


class VectorizedResumeTest(absltest.TestCase):
  """A vmapped comparison is checkpointed like a single run (train.vectorize=always)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.config = make_vectorized_config()
    cls.reference = tempfile.mkdtemp()
    lines = []
    experiment.run(cls.config, cls.reference, log=lines.append)
    assert '4 runs as 1 program' in lines[1], lines[1]
    cls.reference_outcome = outcome(cls.reference)
    cls.reference_weights = reported_weights(cls.reference)

  def test_sigkill_at_random_moments_then_resume_is_bitwise_identical(self):
    rng = np.random.default_rng(11)
    for attempt in range(2):  # Early (4 lanes) and later (maybe after compaction).
      with self.subTest(attempt=attempt):
        workdir = tempfile.mkdtemp()
        proc = start('-c', SCRIPT, workdir, 'make_vectorized_config')
        wait_for_checkpoint(workdir, proc)
        time.sleep(rng.uniform(0.0, 1.0) + 3.0 * attempt)
        proc.kill()
        proc.communicate()
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        for path in glob.glob(os.path.join(workdir, '**', '*.json'), recursive=True):
          with open(path) as f:
            json.load(f)
        lines = []
        experiment.run(self.config, workdir, log=lines.append)
        self.assertIn('resuming from its checkpoint after', '\n'.join(lines))
        self.assertEqual(outcome(workdir), self.reference_outcome)
        self.assertEqual(reported_weights(workdir), self.reference_weights)
        self.assertFalse(os.path.exists(os.path.join(workdir, 'checkpoints')))

  def test_sigint_checkpoints_the_program_and_resumes_bitwise(self):
    workdir = tempfile.mkdtemp()
    lines = []

    def on_epoch(label, row):
      if label == 'baseline seed 1' and row['epoch'] == 130:  # Fast runs stopped: 2 lanes.
        os.kill(os.getpid(), signal.SIGINT)

    with self.assertRaises(checkpointing.Preempted) as ctx:
      experiment.run(self.config, workdir, log=lines.append, on_epoch=on_epoch)
    self.assertEqual(ctx.exception.code, 130)
    self.assertIn('in a program of 4 runs, checkpointed after 131 epochs', lines[-1])
    # The two fast runs finished before the stop and are kept.
    self.assertLen(glob.glob(os.path.join(workdir, 'runs', 'fast', 'seed_*',
                                          workdir_lib.RESULT_FILE)), 2)
    lines.clear()
    experiment.run(self.config, workdir, log=lines.append)
    self.assertIn('resuming from its checkpoint after 131 epochs', '\n'.join(lines))
    self.assertEqual(outcome(workdir), self.reference_outcome)
    self.assertEqual(reported_weights(workdir), self.reference_weights)


class WorkdirClaimTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.config = load_config('configs/base.py', 'smoke')
    cls.config.seeds, cls.config.train.epochs = 1, 1
    cls.workdir = tempfile.mkdtemp()
    experiment.run(cls.config, cls.workdir, log=quiet)

  def test_different_config_is_refused_and_nothing_changes(self):
    before = helpers.snapshot(self.workdir)
    config = copy.deepcopy(self.config)
    config.train.epochs = 2
    with self.assertRaisesRegex(
        ConfigError, r'holds the results of a different config \(train.epochs: 1 in the '
        r'workdir, 2 now\); pass a new --workdir, or the same config to resume'):
      experiment.run(config, self.workdir, log=quiet)
    self.assertEqual(helpers.snapshot(self.workdir), before)

  def test_results_without_config_are_refused(self):
    workdir = tempfile.mkdtemp()
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      f.write('{"earlier": true}')
    with self.assertRaisesRegex(ConfigError, 'no readable config.json'):
      experiment.run(self.config, workdir, log=quiet)
    self.assertEqual(os.listdir(workdir), ['results.json'])

  def test_a_workdir_without_results_takes_the_new_config(self):
    # Nothing to lose: e.g. an earlier attempt stopped before its first run finished.
    workdir = tempfile.mkdtemp()
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write('{"seed": 123}')
    self.assertFalse(experiment.prepare_workdir(workdir, self.config))
    self.assertTrue(experiment.prepare_workdir(workdir, self.config))
    with open(os.path.join(workdir, 'config.json')) as f:
      self.assertEqual(json.load(f)['train']['epochs'], 1)


class DivergenceTest(absltest.TestCase):

  def test_diverged_variant_is_recorded_and_left_out(self):
    config = load_config('configs/base.py', 'smoke')
    from regjax import variants
    variants.set_variants(config, baseline={},
                          explode={'optimizer.name': 'sgd', 'optimizer.learning_rate': 1e30})
    lines = []
    result = experiment.run(config, tempfile.mkdtemp(), log=lines.append)
    exploded = [r for r in result['records'] if r['variant'] == 'explode']
    self.assertLen(exploded, 2)
    for record in exploded:
      self.assertTrue(record['diverged'])
      self.assertEqual(record['diverged_epoch'], 0)
    diverged_lines = [line for line in lines if 'DIVERGED' in line]
    self.assertLen(diverged_lines, 2)
    self.assertIn('explode seed 0: DIVERGED at epoch 0 (non-finite train_loss); left out of '
                  'the comparison', diverged_lines[0])
    rows = {row['variant']: row for row in result['rows']}
    self.assertEqual((rows['explode']['n'], rows['explode']['diverged']), (0, 2))
    self.assertEqual((rows['baseline']['n'], rows['baseline']['diverged']), (2, 0))
    self.assertGreater(rows['baseline']['test_acc_mean'], 0.1)


if __name__ == '__main__':
  absltest.main()
