"""Checkpoints: exact round trips, exact resume of `Runner.fit`, pruning, damage, signals."""

import functools
import math
import os
import signal
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import numpy as np

from regjax import checkpointing
from regjax import schema
from regjax import train
from regjax.data import load_dataset
from tests import helpers


def small_config(**overrides):
  c = schema.default_config()
  c.data.train_size = 200
  c.model.widths = (16,)
  c.train.epochs = 6
  c.train.batch_size = 50
  c.optimizer.learning_rate = 1e-2
  c.early_stopping.patience = 100
  return helpers.override(c, **overrides)


@functools.lru_cache(maxsize=None)
def digits():
  c = schema.default_config().data
  c.train_size = 200
  return load_dataset(c)


def without_seconds(rows):
  return [{k: v for k, v in r.items() if 'seconds' not in k} for r in rows]


def scrambled_states(config, seed=0):
  """(runner, state, es_state): fresh states with every leaf set to arbitrary values.

  Cheaper than training (no compile) and a stricter round trip: no zeros or ones that a
  broken restore could produce by accident.
  """
  runner = train.Runner(config, digits())
  state, es_state, _ = runner._init(seed)
  rng = np.random.default_rng(seed)

  def scramble(x):
    if x.dtype == np.bool_:
      return ~x
    if np.issubdtype(x.dtype, np.integer):
      return x + rng.integers(1, 1000, dtype=x.dtype)
    return (x + rng.normal(size=x.shape)).astype(x.dtype)

  return runner, *jax.tree.map(scramble, (state, es_state))


class RoundTripTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('adam', {}),
      ('adamw_prox_maxnorm_clip_cosine', {
          'optimizer.name': 'adamw', 'optimizer.weight_decay': 1e-2,
          'optimizer.l1_prox': 1e-3, 'optimizer.max_norm': 3.0,
          'optimizer.grad_clip_norm': 1.0, 'optimizer.schedule': 'cosine'}),
      ('momentum_batchnorm', {'optimizer.name': 'momentum', 'model.batch_norm': True}),
      # No restore: the early-stopping state keeps no weights (None leaves).
      ('sgd_no_restore', {'optimizer.name': 'sgd', 'early_stopping.restore_best': False}),
  )
  def test_saved_state_reads_back_bit_for_bit(self, overrides):
    runner, state, es_state = scrambled_states(small_config(**overrides))
    history = [{'epoch': 0, 'train_loss': 0.1 + 0.2}, {'epoch': 1, 'train_loss': math.nan}]
    with checkpointing.RunCheckpoints(tempfile.mkdtemp()) as ckpt:
      self.assertTrue(ckpt.save(2, state, es_state, history, force=True))
      ckpt.wait()
      fresh_state, fresh_es, _ = runner._init(0)
      restored = ckpt.restore(fresh_state, fresh_es)
    self.assertEqual(restored.epoch, 2)
    chex.assert_trees_all_equal(restored.state, state)
    chex.assert_trees_all_equal(restored.es_state, es_state)
    self.assertEqual(restored.history[0]['train_loss'], 0.30000000000000004)
    self.assertTrue(math.isnan(restored.history[1]['train_loss']))
    self.assertIsNone(restored.stop)

  def test_finished_run_file_reads_back_exactly(self):
    directory = os.path.join(tempfile.mkdtemp(), 'baseline', 'seed_3')
    record = {'variant': 'baseline', 'seed': 3, 'test_accuracy': 1 / 3, 'val_loss': math.nan,
              'diverged': False, 'diverged_epoch': None}
    history = [{'epoch': 0, 'train_loss': math.inf}]
    self.assertIsNone(checkpointing.read_result(directory))
    checkpointing.write_result(directory, record, history)
    got_record, got_history = checkpointing.read_result(directory)
    self.assertEqual(got_record['test_accuracy'], 1 / 3)
    self.assertTrue(math.isnan(got_record['val_loss']))
    self.assertEqual(got_history, history)
    with open(directory + '.json', 'w') as f:
      f.write('{"record": ')  # As if cut short: counts as unfinished, is not an error.
    self.assertIsNone(checkpointing.read_result(directory))


class ResumeFitTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # One Runner (one compile) for every fit: resuming reads the state from disk
    # whichever Runner does it; the Runner holds no state between fits.
    cls.config = small_config(**{'model.dropout_rate': 0.3, 'train.epochs': 7})
    cls.runner = train.Runner(cls.config, digits())
    cls.expected = cls.runner.fit(5)

  def test_interrupted_then_resumed_fit_equals_uninterrupted(self):
    expected_record, expected_history, expected_vars = self.expected
    directory = tempfile.mkdtemp()
    calls = []

    def stop_after_three():
      calls.append(None)
      return len(calls) > 3  # Polled before each epoch: 3 epochs run, then a stop.

    with checkpointing.RunCheckpoints(directory) as ckpt:
      with self.assertRaises(checkpointing.Interrupted) as ctx:
        self.runner.fit(5, checkpoints=ckpt, stop_requested=stop_after_three)
      self.assertEqual(ctx.exception.epochs_done, 3)
      self.assertEqual(ckpt.latest_epoch(), 3)  # The requested stop always saves.

    new_rows = []
    with checkpointing.RunCheckpoints(directory) as ckpt:
      record, history, variables = self.runner.fit(5, on_epoch=new_rows.append,
                                                   checkpoints=ckpt)
    self.assertEqual([r['epoch'] for r in new_rows], [3, 4, 5, 6])
    self.assertEqual(without_seconds(history), without_seconds(expected_history))
    self.assertEqual(without_seconds([record]), without_seconds([expected_record]))
    chex.assert_trees_all_equal(variables, expected_vars)

  def test_finished_checkpoint_is_not_trained_again(self):
    directory = tempfile.mkdtemp()
    with checkpointing.RunCheckpoints(directory) as ckpt:
      self.runner.fit(5, checkpoints=ckpt)
    rows = []
    with checkpointing.RunCheckpoints(directory) as ckpt:
      again, history, _ = self.runner.fit(5, on_epoch=rows.append, checkpoints=ckpt)
    self.assertEqual(rows, [])
    self.assertLen(history, 7)
    self.assertFalse(again['diverged'])
    self.assertIsNone(again['diverged_epoch'])
    self.assertEqual(without_seconds([again]), without_seconds([self.expected[0]]))

  def test_at_most_two_checkpoints_and_one_after_finishing(self):
    directory = tempfile.mkdtemp()
    with checkpointing.RunCheckpoints(directory, interval_s=0, asynchronous=False) as ckpt:
      self.runner.fit(0, checkpoints=ckpt)
      self.assertEqual(sorted(os.listdir(directory)), ['6', '7'])
      ckpt.keep_only_latest()
    self.assertEqual(os.listdir(directory), ['7'])

  def test_timed_saves_wait_for_their_interval_but_the_final_state_is_saved(self):
    directory = tempfile.mkdtemp()
    with checkpointing.RunCheckpoints(directory, interval_s=3600) as ckpt:
      self.runner.fit(0, checkpoints=ckpt)
    self.assertEqual(os.listdir(directory), ['7'])

  def test_damaged_newest_checkpoint_falls_back_to_the_one_before(self):
    runner, state, es_state = scrambled_states(small_config())
    directory = tempfile.mkdtemp()
    with checkpointing.RunCheckpoints(directory, interval_s=0, asynchronous=False) as ckpt:
      ckpt.save(1, state, es_state, [{'epoch': 0}])
      ckpt.save(2, state, es_state, [{'epoch': 0}, {'epoch': 1}])
    # A save cut short by SIGKILL leaves a temporary folder; opening cleans it up.
    leftover = os.path.join(directory, '3.orbax-checkpoint-tmp')
    os.makedirs(os.path.join(leftover, 'state'))
    for root, _, files in os.walk(os.path.join(directory, '2')):
      for name in files:
        with open(os.path.join(root, name), 'wb') as f:
          f.write(b'\0garbage')
    fresh = runner._init(0)[:2]
    lines = []
    with checkpointing.RunCheckpoints(directory, log=lines.append) as ckpt:
      restored = ckpt.restore(*fresh)
      self.assertEqual(restored.epoch, 1)
      # The damaged epoch is deleted, so training it again can save it again.
      self.assertTrue(ckpt.save(2, restored.state, restored.es_state,
                                restored.history + [{'epoch': 1}], force=True))
    self.assertIn('the checkpoint after 2 epochs is unreadable', lines[0])
    self.assertEqual(lines[1], 'resuming from its checkpoint after 1 epochs')
    self.assertFalse(os.path.exists(leftover))
    with checkpointing.RunCheckpoints(directory) as ckpt:
      self.assertEqual(ckpt.restore(*fresh).epoch, 2)
    with checkpointing.RunCheckpoints(tempfile.mkdtemp()) as ckpt:
      self.assertIsNone(ckpt.restore(*fresh))


class DivergenceTest(absltest.TestCase):

  def test_divergence_is_recorded_with_its_epoch(self):
    config = small_config(**{'optimizer.name': 'sgd', 'optimizer.learning_rate': 1e30})
    record, history, _ = train.Runner(config, digits()).fit(0)
    first_bad = next(r['epoch'] for r in history if not math.isfinite(r['train_loss']))
    self.assertTrue(record['diverged'])
    self.assertEqual(record['stop_reason'], 'non_finite')
    self.assertEqual(record['diverged_epoch'], first_bad)
    self.assertEqual(record['diverged_metric'], 'train_loss')
    self.assertEqual(record['epochs_run'], first_bad + 1)


class PreemptionGuardTest(parameterized.TestCase):

  @parameterized.parameters(signal.SIGTERM, signal.SIGINT)
  def test_first_signal_is_a_request_and_handlers_come_back(self, signum):
    before = signal.getsignal(signum)
    with checkpointing.PreemptionGuard() as guard:
      self.assertFalse(guard.requested)
      os.kill(os.getpid(), signum)  # Would end (or interrupt) the test without the guard.
      self.assertEqual(guard.signum, signum)
      # A second signal would act at once: the previous handler is back already.
      self.assertEqual(signal.getsignal(signum), before)
    self.assertEqual(signal.getsignal(signum), before)
    self.assertEqual(checkpointing.Preempted(signum, 'x').code, 128 + signum)


if __name__ == '__main__':
  absltest.main()
