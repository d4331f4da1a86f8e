"""Checkpoints: exact round trips, exact resume of a run and of a vmapped group, damage,
finished-run files, signals."""

import functools
import math
import os
import signal
import tempfile
import time

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import numpy as np

from regjax import checkpointing
from regjax import schema
from regjax import train
from regjax import workdir
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


def scrambled_state(config, lanes=1, seed=0):
  """A group's stacked initial state with every leaf set to arbitrary values.

  Cheaper than training (no compile) and a stricter round trip: no zeros or ones that a
  broken restore could produce by accident.
  """
  group = train.RunGroup([train.Run(config, s, digits()) for s in range(lanes)])
  run = group._init(list(range(lanes)))
  rng = np.random.default_rng(seed)

  def scramble(x):
    x = np.asarray(x)
    if x.dtype == np.bool_:
      return ~x
    if np.issubdtype(x.dtype, np.integer):
      return x + rng.integers(1, 1000, dtype=x.dtype)
    return (x + rng.normal(size=x.shape)).astype(x.dtype)

  return group, jax.tree.map(scramble, run)


class RoundTripTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('adam', {}, 1),
      ('adamw_prox_maxnorm_clip_cosine', {
          'optimizer.name': 'adamw', 'optimizer.weight_decay': 1e-2,
          'optimizer.l1_prox': 1e-3, 'optimizer.max_norm': 3.0,
          'optimizer.grad_clip_norm': 1.0, 'optimizer.schedule': 'cosine'}, 1),
      ('momentum_batchnorm_three_lanes', {'optimizer.name': 'momentum',
                                          'model.batch_norm': True}, 3),
      # No restore: the early-stopping state keeps no weights (None leaves).
      ('sgd_no_restore', {'optimizer.name': 'sgd', 'early_stopping.restore_best': False}, 1),
  )
  def test_saved_state_reads_back_bit_for_bit(self, overrides, lanes):
    group, run = scrambled_state(small_config(**overrides), lanes)
    meta = {'lanes': list(range(lanes)),
            'histories': [[{'epoch': 0, 'train_loss': 0.1 + 0.2},
                           {'epoch': 1, 'train_loss': math.nan}]]}
    with checkpointing.Checkpoints(tempfile.mkdtemp()) as ckpt:
      self.assertTrue(ckpt.save(2, {'run': run}, meta, force=True))
      ckpt.wait()
      restored = ckpt.restore(lambda m: {'run': group._template(len(m['lanes']))})
    self.assertEqual(restored.epoch, 2)
    self.assertEqual(restored.meta['epoch'], 2)
    chex.assert_trees_all_equal(jax.device_get(restored.tree['run']), run)
    history = restored.meta['histories'][0]
    self.assertEqual(history[0]['train_loss'], 0.30000000000000004)
    self.assertTrue(math.isnan(history[1]['train_loss']))

  def test_damaged_newest_checkpoint_falls_back_to_the_one_before(self):
    group, run = scrambled_state(small_config())
    template = lambda meta: {'run': group._template(len(meta['lanes']))}
    directory = tempfile.mkdtemp()
    with checkpointing.Checkpoints(directory, interval_s=0, asynchronous=False) as ckpt:
      ckpt.save(1, {'run': run}, {'lanes': [0]})
      ckpt.save(2, {'run': run}, {'lanes': [0]})
    # A save cut short by SIGKILL leaves a temporary folder; opening cleans it up.
    leftover = os.path.join(directory, '3.orbax-checkpoint-tmp')
    os.makedirs(os.path.join(leftover, 'state'))
    for root, _, files in os.walk(os.path.join(directory, '2')):
      for name in files:
        with open(os.path.join(root, name), 'wb') as f:
          f.write(b'\0garbage')
    lines = []
    with checkpointing.Checkpoints(directory, log=lines.append) as ckpt:
      restored = ckpt.restore(template)
      self.assertEqual(restored.epoch, 1)
      # The damaged epoch is deleted, so training it again can save it again.
      self.assertTrue(ckpt.save(2, restored.tree, {'lanes': [0]}, force=True))
    self.assertIn('the checkpoint after 2 epochs is unreadable', lines[0])
    self.assertEqual(lines[1], 'resuming from its checkpoint after 1 epochs')
    self.assertFalse(os.path.exists(leftover))
    with checkpointing.Checkpoints(directory) as ckpt:
      self.assertEqual(ckpt.restore(template).epoch, 2)
    with checkpointing.Checkpoints(tempfile.mkdtemp()) as ckpt:
      self.assertIsNone(ckpt.restore(template))

  def test_timed_saves_wait_for_their_interval(self):
    group, run = scrambled_state(small_config())
    directory = tempfile.mkdtemp()
    with checkpointing.Checkpoints(directory, interval_s=3600) as ckpt:
      self.assertFalse(ckpt.save(1, {'run': run}, {'lanes': [0]}))
      self.assertTrue(ckpt.save(2, {'run': run}, {'lanes': [0]}, force=True))
      self.assertFalse(ckpt.save(2, {'run': run}, {'lanes': [0]}, force=True))  # Saved.
    self.assertEqual(os.listdir(directory), ['2'])


class SavingPolicyTest(parameterized.TestCase):
  """When saves happen: not before they are due (not even a folder), and never more than
  `max_save_share` of the wall clock."""

  def test_a_run_shorter_than_the_interval_never_touches_the_disk(self):
    config = small_config(**{'train.epochs': 3})
    directory = os.path.join(tempfile.mkdtemp(), 'checkpoints', 'baseline', 'seed_0')
    with checkpointing.Checkpoints(directory, interval_s=3600) as ckpt:
      results = train.RunGroup([train.Run(config, 0, digits())]).fit(checkpoints=ckpt)
      self.assertIsNone(ckpt.latest_epoch())
    self.assertLen(results[0][1], 3)  # It trained; no folder, not even its parents.
    self.assertFalse(os.path.exists(os.path.dirname(os.path.dirname(directory))))

  def test_the_first_due_save_creates_the_folder(self):
    _, run = scrambled_state(small_config())
    directory = os.path.join(tempfile.mkdtemp(), 'seed_0')
    with checkpointing.Checkpoints(directory, interval_s=0.05) as ckpt:
      self.assertFalse(ckpt.save(1, {'run': run}, {'lanes': [0]}))  # Not due yet.
      self.assertFalse(os.path.exists(directory))
      time.sleep(0.06)
      self.assertTrue(ckpt.save(2, {'run': run}, {'lanes': [0]}))
    self.assertEqual(os.listdir(directory), ['2'])

  @parameterized.parameters(True, False)
  def test_a_slow_save_stretches_the_interval_to_its_share(self, asynchronous):
    _, run = scrambled_state(small_config())
    directory = tempfile.mkdtemp()
    # A share so small that any measured save stretches the interval past the test.
    with checkpointing.Checkpoints(directory, interval_s=1e-3, asynchronous=asynchronous,
                                   max_save_share=1e-5) as ckpt:
      self.assertEqual(ckpt.effective_interval_s, 1e-3)  # Nothing measured yet.
      self.assertTrue(ckpt.save(1, {'run': run}, {'lanes': [0]}, force=True))
      ckpt.wait()
      seconds = ckpt.last_save_seconds
      self.assertBetween(seconds, 1e-4, 60)  # Call to commit: measured, not a default.
      self.assertAlmostEqual(ckpt.effective_interval_s, seconds / 1e-5)
      time.sleep(0.01)  # Ten times interval_s: due by the interval, not by the share.
      self.assertFalse(ckpt.save(2, {'run': run}, {'lanes': [0]}))
      # A stop request saves whatever the timing.
      self.assertTrue(ckpt.save(3, {'run': run}, {'lanes': [0]}, force=True))
    self.assertEqual(sorted(os.listdir(directory)), ['1', '3'])

  def test_interval_zero_saves_every_epoch_whatever_a_save_costs(self):
    _, run = scrambled_state(small_config())
    directory = tempfile.mkdtemp()
    with checkpointing.Checkpoints(directory, interval_s=0, asynchronous=False,
                                   max_save_share=1e-5, max_to_keep=5) as ckpt:
      for epoch in (1, 2, 3):
        self.assertTrue(ckpt.save(epoch, {'run': run}, {'lanes': [0]}))
      self.assertEqual(ckpt.effective_interval_s, 0)
    self.assertEqual(sorted(os.listdir(directory)), ['1', '2', '3'])


class FinishedRunFilesTest(absltest.TestCase):

  def test_finished_run_file_reads_back_exactly(self):
    directory = workdir.run_dir(tempfile.mkdtemp(), 'baseline', 3)
    record = {'variant': 'baseline', 'seed': 3, 'test_accuracy': 1 / 3, 'val_loss': math.nan,
              'diverged': False, 'diverged_epoch': None}
    history = [{'epoch': 0, 'train_loss': math.inf}]
    self.assertIsNone(workdir.read_result(directory))
    workdir.write_result(directory, record, history)
    got_record, got_history = workdir.read_result(directory)
    self.assertEqual(got_record['test_accuracy'], 1 / 3)
    self.assertTrue(math.isnan(got_record['val_loss']))
    self.assertEqual(got_history, history)
    with open(os.path.join(directory, workdir.RESULT_FILE), 'w') as f:
      f.write('{"record": ')  # As if cut short: counts as unfinished, is not an error.
    self.assertIsNone(workdir.read_result(directory))

  def test_reported_weights_read_back_without_regjax(self):
    import flax.serialization  # pylint: disable=g-import-not-at-top
    _, _, variables = train.fit(small_config(**{'train.epochs': 1,
                                                'model.batch_norm': True}), digits(), 0)
    directory = tempfile.mkdtemp()
    path = workdir.save_variables(directory, variables)
    with open(path, 'rb') as f:  # flax alone, no regjax: a plain dict of numpy arrays.
      plain = flax.serialization.msgpack_restore(f.read())
    self.assertEqual(set(plain), {'params', 'batch_stats'})
    chex.assert_trees_all_equal(plain, jax.device_get(variables))


class ResumeFitTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # Noisy labels and learning rates from 3e-3 to 1e-1: the four runs stop at different
    # epochs (measured: 11, 8, 4, 2), so the group compacts to 2 lanes and then to one
    # (the unvmapped program). Dropout, so that the keys matter.
    c = schema.default_config().data
    c.train_size, c.label_noise = 200, 0.5
    cls.data = load_dataset(c)
    cls.runs = [train.Run(small_config(**{
        'model.widths': (128,), 'model.dropout_rate': 0.3, 'train.epochs': 12,
        'early_stopping.patience': 1, 'optimizer.learning_rate': lr}), seed, cls.data)
                for seed, lr in zip((5, 6, 7, 8), (3e-3, 1e-2, 3e-2, 1e-1))]
    cls.expected = {1: train.RunGroup(cls.runs[:1]).fit(),
                    4: train.RunGroup(cls.runs).fit()}

  @parameterized.parameters(1, 4)
  def test_interrupted_then_resumed_fit_equals_uninterrupted(self, k):
    expected = self.expected[k]
    if k > 1:  # Runs stop apart: the group has to compact.
      self.assertLen({r[0]['stop_epoch'] for r in expected}, 4)
    directory = tempfile.mkdtemp()
    calls = []

    def stop_after_three():
      calls.append(None)
      return len(calls) > 3  # Polled before each epoch: 3 epochs run, then a stop.

    with checkpointing.Checkpoints(directory) as ckpt:
      with self.assertRaises(checkpointing.Interrupted) as ctx:
        train.RunGroup(self.runs[:k]).fit(checkpoints=ckpt, stop_requested=stop_after_three)
      self.assertEqual(ctx.exception.epochs_done, 3)
      self.assertEqual(ckpt.latest_epoch(), 3)  # The requested stop always saves.

    new_rows = []
    with checkpointing.Checkpoints(directory) as ckpt:
      results = train.RunGroup(self.runs[:k]).fit(
          on_epoch=lambda m, row: new_rows.append(row['epoch']), checkpoints=ckpt)
    self.assertEqual(min(new_rows), 3)
    for (record, history, variables), (e_record, e_history, e_variables) in zip(
        results, expected):
      self.assertEqual(without_seconds(history), without_seconds(e_history))
      self.assertEqual(without_seconds([record]), without_seconds([e_record]))
      if record['stop_epoch'] < 3:  # Finished before the stop: its record comes back.
        self.assertIsNone(variables)
      else:
        chex.assert_trees_all_equal(variables, e_variables)

  def test_resumed_after_some_runs_finished_reports_them_from_the_checkpoint(self):
    expected = self.expected[4]
    first_stop = min(r[0]['stop_epoch'] for r in expected)
    directory = tempfile.mkdtemp()
    calls = []
    with checkpointing.Checkpoints(directory, interval_s=0, asynchronous=False) as ckpt:
      with self.assertRaises(checkpointing.Interrupted):
        train.RunGroup(self.runs).fit(
            checkpoints=ckpt,
            stop_requested=lambda: calls.append(None) or len(calls) > first_stop + 2)
    with checkpointing.Checkpoints(directory) as ckpt:
      results = train.RunGroup(self.runs).fit(checkpoints=ckpt)
    for (record, history, variables), (e_record, _, _) in zip(results, expected):
      self.assertEqual(without_seconds([record]), without_seconds([e_record]))
      # A run that had finished before the stop comes back as its record alone.
      self.assertEqual(variables is None, record['stop_epoch'] < first_stop + 2)


class DivergenceTest(absltest.TestCase):

  def test_divergence_is_recorded_with_its_epoch(self):
    config = small_config(**{'optimizer.name': 'sgd', 'optimizer.learning_rate': 1e30})
    record, history, _ = train.fit(config, digits(), 0)
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
