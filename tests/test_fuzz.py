"""Fuzzed bad input: config values and data files give one line, and lose nothing.

Every example runs against a workdir that already holds a finished comparison and must
fail with a one-line ConfigError that names the bad field, leaving every byte of that
workdir as it was (and a new workdir uncreated). Most examples call experiment.run in
this process; a few go through the command line to check the exit status and that no
traceback is printed. Hypothesis is derandomized (same examples every run) and sized to
keep the file well under a minute.
"""

import copy
import functools
import gzip
import math
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import ml_collections
import numpy as np

from regjax import experiment
from regjax.data import load_dataset
from regjax.errors import ConfigError
from tests import helpers
from tests.test_main import ROOT, load_config

# Most examples fail within milliseconds (before any data is read or program traced).
FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=100)
FEW = settings(derandomize=True, database=None, deadline=None, max_examples=3)


def quiet(line: str) -> None:
  del line


def base_config() -> ml_collections.ConfigDict:
  config = load_config('configs/base.py', 'smoke')
  config.seeds, config.train.epochs = 1, 1
  return config


def with_value(config: ml_collections.ConfigDict, dotted: str, value
               ) -> ml_collections.ConfigDict:
  """A copy of `config` with `dotted` set to `value`, whatever its type.

  Built from a plain dict, so the ConfigDict's own type checks (which guard the command
  line) do not stop ill-typed values: notebooks and scripts can pass them too.
  """
  tree = config.to_dict()
  node = tree
  *parents, leaf = dotted.split('.')
  for part in parents:
    node = node[part]
  node[leaf] = value
  return ml_collections.ConfigDict(tree)


# ----------------------------------------------------------------------------- values

_not_number = st.one_of(st.text(max_size=4), st.none(), st.lists(st.integers(), max_size=2))
_non_finite = st.sampled_from([math.nan, math.inf, -math.inf])


def _not_int(min_value=None, max_value=None):
  """Integers outside [min_value, max_value], non-integral floats, and non-numbers."""
  outside = []
  if min_value is not None:
    outside.append(st.integers(max_value=min_value - 1))
  if max_value is not None:
    outside.append(st.integers(min_value=max_value + 1))
  return st.one_of(*outside, st.floats(), st.booleans(), _not_number)


def _outside(low, high, high_open=True):
  """Floats outside [low, high) (or [low, high]), non-finite ones and non-numbers."""
  above = st.floats(min_value=high, exclude_min=not high_open, allow_infinity=False)
  return st.one_of(st.floats(max_value=low, exclude_max=True, allow_infinity=False), above,
                   _non_finite, st.booleans(), _not_number)


def _not_one_of(*allowed):
  return st.one_of(st.text(max_size=8).filter(lambda s: s not in allowed), st.none(),
                   st.integers())


_negative = st.one_of(st.floats(max_value=0, exclude_max=True, allow_infinity=False),
                      _non_finite, st.booleans(), _not_number)
_bad_regex = st.sampled_from(['(', '[', '*', 'a)', '(?P<x', '+', 7, None])

# field -> strategy of values the schema or its validators must reject.
BAD_VALUES = {
    'seeds': _not_int(min_value=1),
    'seed': _not_int(min_value=0),
    'train.epochs': _not_int(min_value=1),
    'train.batch_size': _not_int(min_value=1, max_value=270),  # 270 training examples.
    'train.eval_batch_size': _not_int(min_value=1),
    'model.name': _not_one_of('mlp', 'cnn'),
    'model.activation': _not_one_of('relu', 'gelu', 'tanh', 'elu', 'swish'),
    'model.dropout_rate': _outside(0.0, 1.0),
    'model.dropout_mode': _not_one_of('inverted', 'classic'),
    'model.widths': st.one_of(st.lists(st.integers(max_value=0), min_size=1, max_size=2),
                              st.text(min_size=1, max_size=3)),
    'model.bn_momentum': _outside(0.0, 1.0),
    'penalty.l1': _negative,
    'penalty.l2': _negative,
    'penalty.mask': _bad_regex,
    'optimizer.name': _not_one_of('sgd', 'momentum', 'adam', 'adamw'),
    'optimizer.learning_rate': _negative,
    'optimizer.b2': _outside(0.0, 1.0),
    'optimizer.weight_decay': _negative,
    'optimizer.mask': _bad_regex,
    'early_stopping.monitor': _not_one_of('train_loss', 'train_penalty', 'train_accuracy',
                                          'weight_l1', 'weight_l2', 'zero_fraction',
                                          'val_loss', 'val_accuracy'),
    'early_stopping.mode': _not_one_of('min', 'max', 'auto'),
    'early_stopping.patience': _not_int(min_value=0),
    'data.name': _not_one_of('digits', 'mnist', 'fashion_mnist').filter(
        lambda s: not (isinstance(s, str) and s.startswith(('tfds:', 'npz:')))),
    'data.validation_fraction': _outside(0.0, 1.0),
    'data.label_noise': _outside(0.0, 1.0, high_open=False),
    'data.train_size': st.one_of(st.integers(max_value=-1), st.integers(min_value=1213),
                                 st.floats(), _not_number),
}


@functools.lru_cache(maxsize=None)
def finished_workdir() -> str:
  """A workdir holding a finished comparison of `base_config()` (made once; read only)."""
  workdir = tempfile.mkdtemp()
  experiment.run(base_config(), workdir, log=quiet)
  return workdir


class _FinishedWorkdirTest(absltest.TestCase):
  """Shares one finished workdir and its snapshot: bad input must leave it byte-identical."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.config = base_config()
    cls.workdir = finished_workdir()
    cls.before = helpers.snapshot(cls.workdir)


class ConfigFuzzTest(_FinishedWorkdirTest):

  def assert_one_line_error_and_workdir_intact(self, config, field):
    with self.assertRaises(ConfigError) as ctx:
      experiment.run(config, self.workdir, log=quiet)
    message = str(ctx.exception)
    self.assertNotIn('\n', message)
    self.assertEqual(ctx.exception.field, field, message)
    self.assertEqual(helpers.snapshot(self.workdir), self.before)

  @settings(FUZZ, max_examples=200)
  @given(st.sampled_from(sorted(BAD_VALUES)).flatmap(
      lambda field: st.tuples(st.just(field), BAD_VALUES[field])))
  def test_bad_value_is_one_line_naming_the_field_and_loses_nothing(self, field_value):
    field, value = field_value
    self.assert_one_line_error_and_workdir_intact(
        with_value(self.config, field, value), field)

  @FEW
  @given(st.sampled_from(['penalty.l2', 'optimizer.learning_rate', 'model.dropout_rate']),
         st.floats(min_value=1e-6, max_value=0.5))
  def test_a_valid_but_different_config_is_refused(self, field, value):
    # Valid values, but not those of the finished comparison in the workdir.
    self.assert_one_line_error_and_workdir_intact(
        with_value(self.config, field, value), 'workdir')

  def test_bad_value_in_a_new_workdir_creates_nothing(self):
    workdir = os.path.join(tempfile.mkdtemp(), 'new')
    with self.assertRaises(ConfigError):
      experiment.run(with_value(self.config, 'early_stopping.monitor', 'val_los'), workdir,
                     log=quiet)
    self.assertFalse(os.path.exists(workdir))


# ----------------------------------------------------------------------------- files

IDX_NAMES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte',
             't10k-labels-idx1-ubyte')


def idx_bytes(array: np.ndarray) -> bytes:
  """An IDX file of unsigned bytes: magic 0x0000080N, N big-endian sizes, the data."""
  header = bytes([0, 0, 8, array.ndim]) + b''.join(
      int(n).to_bytes(4, 'big') for n in array.shape)
  return header + array.astype(np.uint8).tobytes()


def valid_idx_files(rng: np.random.Generator) -> dict[str, bytes]:
  """A tiny valid MNIST-style set: 60 training and 20 test images of 6x6, 10 classes."""
  out = {}
  for prefix, n in (('train', 60), ('t10k', 20)):
    out[f'{prefix}-images-idx3-ubyte'] = idx_bytes(rng.integers(0, 256, (n, 6, 6)))
    out[f'{prefix}-labels-idx1-ubyte'] = idx_bytes(np.arange(n) % 10)
  return out


def corrupt_idx(data: bytes, kind: str, draw) -> bytes:
  """One certainly-invalid change of an IDX file."""
  ndim = data[3]
  if kind == 'empty':
    return b''
  if kind == 'truncated':
    return data[:draw(st.integers(0, len(data) - 1))]
  if kind == 'wrong_magic':
    magic = draw(st.integers(0, 2**32 - 1).filter(
        lambda m: m != int.from_bytes(data[:4], 'big')))
    return magic.to_bytes(4, 'big') + data[4:]
  if kind == 'wrong_shape':  # A size in the header no longer matches the data.
    dim = draw(st.integers(0, ndim - 1))
    start = 4 + 4 * dim
    size = int.from_bytes(data[start:start + 4], 'big') + draw(st.integers(1, 5))
    return data[:start] + size.to_bytes(4, 'big') + data[start + 4:]
  if kind == 'label_out_of_range':
    if ndim != 1:  # Image files have no labels: make it an image file of a label file.
      return corrupt_idx(data, 'wrong_magic', draw)
    at = 8 + draw(st.integers(0, len(data) - 9))
    return data[:at] + bytes([draw(st.integers(10, 255))]) + data[at + 1:]
  raise ValueError(kind)


def valid_npz_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
  return {'x_train': rng.random((60, 5, 5), dtype=np.float32),
          'y_train': (np.arange(60) % 10).astype(np.int64),
          'x_test': rng.random((20, 5, 5), dtype=np.float32),
          'y_test': (np.arange(20) % 10).astype(np.int64)}


def corrupt_npz(arrays: dict[str, np.ndarray], kind: str, draw) -> dict[str, np.ndarray]:
  """One certainly-invalid change of the npz contents."""
  out = dict(arrays)
  split = draw(st.sampled_from(['train', 'test']))
  x, y = f'x_{split}', f'y_{split}'
  if kind == 'missing_key':
    del out[draw(st.sampled_from(sorted(out)))]
  elif kind == 'nan_pixels':
    flat = out[x].copy().reshape(-1)
    flat[draw(st.integers(0, flat.size - 1))] = draw(_non_finite)
    out[x] = flat.reshape(out[x].shape)
  elif kind == 'beyond_float32':  # Float values are kept in any range, but must fit.
    flat = out[x].astype(np.float64).reshape(-1)
    flat[draw(st.integers(0, flat.size - 1))] = draw(st.one_of(
        st.floats(max_value=-1e39, min_value=-1e300), st.floats(min_value=1e39, max_value=1e300)))
    out[x] = flat.reshape(out[x].shape)
  elif kind == 'negative_label':
    labels = out[y].copy()
    labels[draw(st.integers(0, len(labels) - 1))] = draw(st.integers(-1000, -1))
    out[y] = labels
  elif kind == 'wrong_shape':
    choice = draw(st.sampled_from(['labels_too_short', 'images_2d', 'images_5d',
                                   'image_size_differs']))
    if choice == 'labels_too_short':
      out[y] = out[y][:-draw(st.integers(1, 5))]
    elif choice == 'images_2d':
      out[x] = out[x].reshape(len(out[x]), -1)
    elif choice == 'images_5d':
      out[x] = out[x][..., None, None]
    else:
      out[x] = out[x][:, :-1]
  elif kind == 'float_labels':
    out[y] = out[y].astype(np.float32) + 0.5
  elif kind == 'empty':
    out[x], out[y] = out[x][:0], out[y][:0]
  else:
    raise ValueError(kind)
  return out


class DataFileFuzzTest(_FinishedWorkdirTest):

  def assert_rejected(self, data_fields: dict, field: str):
    config = self.config
    for key, value in data_fields.items():
      config = with_value(config, f'data.{key}', value)
    with self.assertRaises(ConfigError) as ctx:
      experiment.run(config, self.workdir, log=quiet)
    self.assertNotIn('\n', str(ctx.exception))
    self.assertEqual(ctx.exception.field, field, str(ctx.exception))
    self.assertEqual(helpers.snapshot(self.workdir), self.before)

  def test_the_uncorrupted_files_load(self):
    # So that each fuzzed failure below is the corruption's doing.
    folder = tempfile.mkdtemp()
    for name, data in valid_idx_files(np.random.default_rng(0)).items():
      with open(os.path.join(folder, name), 'wb') as f:
        f.write(data)
    c = copy.deepcopy(self.config.data)
    c.name, c.dir, c.train_size = 'mnist', folder, 0
    self.assertEqual(load_dataset(c).x_test.shape, (20, 6, 6, 1))
    path = os.path.join(tempfile.mkdtemp(), 'd.npz')
    np.savez(path, **valid_npz_arrays(np.random.default_rng(0)))
    c.name = f'npz:{path}'
    self.assertEqual(load_dataset(c).x_train.shape, (54, 5, 5, 1))

  @FUZZ
  @given(st.sampled_from(IDX_NAMES),
         st.sampled_from(['empty', 'truncated', 'wrong_magic', 'wrong_shape',
                          'label_out_of_range']),
         st.booleans(), st.data())
  def test_corrupt_idx_file(self, name, kind, gzipped, data):
    files = valid_idx_files(np.random.default_rng(0))
    files[name] = corrupt_idx(files[name], kind, data.draw)
    folder = tempfile.mkdtemp()
    for file_name, content in files.items():
      if gzipped:
        file_name, content = file_name + '.gz', gzip.compress(content, mtime=0)
      with open(os.path.join(folder, file_name), 'wb') as f:
        f.write(content)
    self.assert_rejected({'name': 'mnist', 'dir': folder, 'train_size': 0}, 'data.dir')

  @FUZZ
  @given(st.sampled_from(['missing_key', 'nan_pixels', 'beyond_float32',
                          'negative_label', 'wrong_shape', 'float_labels', 'empty']),
         st.data())
  def test_corrupt_npz_file(self, kind, data):
    arrays = corrupt_npz(valid_npz_arrays(np.random.default_rng(0)), kind, data.draw)
    path = os.path.join(tempfile.mkdtemp(), 'data.npz')
    np.savez(path, **arrays)
    self.assert_rejected({'name': f'npz:{path}', 'train_size': 0}, 'data.name')

  @settings(FUZZ, max_examples=20)
  @given(st.binary(max_size=64), st.booleans())
  def test_a_file_that_is_no_data_at_all(self, content, as_npz):
    folder = tempfile.mkdtemp()
    if as_npz:
      path = os.path.join(folder, 'data.npz')
      with open(path, 'wb') as f:
        f.write(content)
      self.assert_rejected({'name': f'npz:{path}', 'train_size': 0}, 'data.name')
    else:
      for name in IDX_NAMES:
        with open(os.path.join(folder, name + '.gz'), 'wb') as f:
          f.write(content)
      self.assert_rejected({'name': 'mnist', 'dir': folder, 'train_size': 0}, 'data.dir')


# ----------------------------------------------------------------------------- CLI

class CommandLineFuzzTest(absltest.TestCase):
  """A few examples through the command line: status 2, one line, no traceback."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = finished_workdir()
    cls.before = helpers.snapshot(cls.workdir)
    cls.npz = os.path.join(tempfile.mkdtemp(), 'data.npz')
    arrays = valid_npz_arrays(np.random.default_rng(0))
    del arrays['y_test']
    np.savez(cls.npz, **arrays)

  def run_cli(self, *args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, '-m', 'regjax.main', '--config=configs/base.py:smoke,seeds=1',
         '--config.train.epochs=1', *args, f'--workdir={self.workdir}'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
    self.assertNotIn('Traceback', proc.stderr)
    lines = proc.stderr.strip().splitlines()
    self.assertLen(lines, 1, proc.stderr)
    self.assertStartsWith(lines[0], 'regjax: error: ')
    self.assertEqual(helpers.snapshot(self.workdir), self.before)
    return lines[0]

  @FEW
  @given(st.sampled_from([
      ('train.epochs', st.sampled_from(['0', '-3', '2.5', 'many'])),
      ('model.dropout_rate', st.sampled_from(['1.0', '-0.5', 'nan', 'high'])),
      ('early_stopping.monitor', st.sampled_from(['val_los', 'loss', 'acc'])),
  ]).flatmap(lambda fs: st.tuples(st.just(fs[0]), fs[1])))
  def test_bad_flag(self, field_text):
    field, text = field_text
    line = self.run_cli(f'--config.{field}={text}')
    self.assertIn(field.split('.')[-1], line)

  def test_bad_data_file(self):
    line = self.run_cli(f'--config.data.name=npz:{self.npz}', '--config.data.train_size=0')
    self.assertIn('lacks y_test', line)

  def test_a_different_config_is_refused(self):
    line = self.run_cli('--config.penalty.l2=0.001')
    self.assertIn('holds the results of a different config (penalty.l2: 0.0 in the workdir, '
                  '0.001 now)', line)


if __name__ == '__main__':
  absltest.main()
