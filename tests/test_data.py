"""Data: sources, the seeded validation split, train_size, label noise and bad input."""

import collections
import gzip
from pathlib import Path
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import chex
import numpy as np
from sklearn import datasets as sk_datasets

from regjax import data
from regjax import schema
from regjax.errors import ConfigError
from tests import paths

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _config(**overrides):
  c = schema.default_config().data
  c.update(overrides)
  return c


def _rows(x: np.ndarray) -> collections.Counter:
  """Multiset of images by their bytes (digits has duplicate images, so not a set)."""
  return collections.Counter(row.tobytes() for row in np.asarray(x, np.float32))


def _tempdir(test: absltest.TestCase) -> Path:
  """A fresh temp dir removed after the test (absl's create_tempdir needs parsed flags,
  which pytest does not do)."""
  return Path(test.enter_context(tempfile.TemporaryDirectory()))


def _assert_one_line_error(test, fn, *fragments):
  with test.assertRaises(ConfigError) as cm:
    fn()
  msg = str(cm.exception)
  test.assertNotIn('\n', msg)
  for fragment in fragments:
    test.assertIn(str(fragment), msg)
  return msg


class DigitsTest(parameterized.TestCase):

  def test_shapes_dtypes_and_ranges(self):
    ds = data.load_dataset(_config())
    # 1797 digits: a fixed 25% (450) test set; round(0.1 * 1347) = 135 validation.
    chex.assert_shape(ds.x_train, (1212, 8, 8, 1))
    chex.assert_shape(ds.x_val, (135, 8, 8, 1))
    chex.assert_shape(ds.x_test, (450, 8, 8, 1))
    chex.assert_shape([ds.y_train, ds.y_train_clean], (1212,))
    chex.assert_shape(ds.y_val, (135,))
    chex.assert_shape(ds.y_test, (450,))
    for x in (ds.x_train, ds.x_val, ds.x_test):
      self.assertEqual(x.dtype, np.float32)
      self.assertEqual(x.min(), 0.0)
      self.assertEqual(x.max(), 1.0)  # 16 / 16: scaled by 16, not 255.
    for y in (ds.y_train, ds.y_val, ds.y_test, ds.y_train_clean):
      self.assertEqual(y.dtype, np.int32)
      self.assertEqual(set(np.unique(y)), set(range(10)))
    self.assertEqual(ds.num_classes, 10)
    self.assertEqual(ds.name, 'digits')
    np.testing.assert_array_equal(ds.y_train, ds.y_train_clean)

  def test_train_val_test_partition_the_digits(self):
    ds = data.load_dataset(_config(validation_fraction=0.2))
    all_x = (sk_datasets.load_digits().images / 16.0)[..., None]
    self.assertEqual(_rows(ds.x_train) + _rows(ds.x_val) + _rows(ds.x_test), _rows(all_x))

  def test_test_split_is_fixed_and_stratified(self):
    a = data.load_dataset(_config(split_seed=0))
    b = data.load_dataset(_config(split_seed=7, validation_fraction=0.3, train_size=50))
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    class_counts = np.bincount(sk_datasets.load_digits().target)
    np.testing.assert_allclose(np.bincount(a.y_test), 0.25 * class_counts, atol=1)

  def test_same_seed_gives_identical_arrays(self):
    cfg = dict(split_seed=3, train_size=500, label_noise=0.3)
    a, b = data.load_dataset(_config(**cfg)), data.load_dataset(_config(**cfg))
    for field in ('x_train', 'y_train', 'x_val', 'y_val', 'x_test', 'y_test',
                  'y_train_clean'):
      np.testing.assert_array_equal(getattr(a, field), getattr(b, field))

  def test_different_seed_gives_a_different_split(self):
    a = data.load_dataset(_config(split_seed=0))
    b = data.load_dataset(_config(split_seed=1))
    overlap = sum((_rows(a.x_val) & _rows(b.x_val)).values())
    # Two random 135-subsets of 1347 share ~13.5 images on average.
    self.assertLess(overlap, 50)

  def test_train_size_truncates_training_and_keeps_validation(self):
    full = data.load_dataset(_config(split_seed=2))
    small = data.load_dataset(_config(split_seed=2, train_size=100))
    chex.assert_shape(small.x_train, (100, 8, 8, 1))
    np.testing.assert_array_equal(small.x_val, full.x_val)
    np.testing.assert_array_equal(small.y_val, full.y_val)
    np.testing.assert_array_equal(small.x_train, full.x_train[:100])  # A prefix.

  def test_validation_fraction_zero_gives_an_empty_validation_set(self):
    ds = data.load_dataset(_config(validation_fraction=0.0))
    chex.assert_shape(ds.x_val, (0, 8, 8, 1))
    chex.assert_shape(ds.y_val, (0,))
    chex.assert_shape(ds.x_train, (1347, 8, 8, 1))

  def test_label_noise_changes_only_training_labels(self):
    p = 0.5
    clean = data.load_dataset(_config(split_seed=4))
    noisy = data.load_dataset(_config(split_seed=4, label_noise=p))
    # The split is drawn before the noise, so images and clean labels are unchanged.
    np.testing.assert_array_equal(noisy.x_train, clean.x_train)
    np.testing.assert_array_equal(noisy.y_train_clean, clean.y_train)
    np.testing.assert_array_equal(noisy.y_val, clean.y_val)
    np.testing.assert_array_equal(noisy.y_test, clean.y_test)
    self.assertTrue(np.all((noisy.y_train >= 0) & (noisy.y_train < 10)))
    # round(0.5 * 1212) = 606 labels are redrawn; each changes with prob 0.9, so the
    # changed count is Binomial(606, 0.9): mean 545.4, sd 7.4. 5 sd = 37.
    changed = int(np.sum(noisy.y_train != noisy.y_train_clean))
    self.assertBetween(changed, 545.4 - 37, 545.4 + 37)

  def test_arrays_are_read_only(self):
    ds = data.load_dataset(_config(label_noise=0.1))
    with self.assertRaises(ValueError):
      ds.x_train[0, 0, 0, 0] = 5.0
    with self.assertRaises(ValueError):
      ds.y_train[0] = 3


class CorruptLabelsTest(parameterized.TestCase):

  @parameterized.parameters((0.0, 0), (0.1, 100), (0.25, 250), (0.3333, 333), (1.0, 1000))
  def test_redraws_exactly_the_rounded_count(self, fraction, count):
    labels = np.arange(1000) % 7
    noisy, chosen = data.corrupt_labels(labels, fraction, 7, np.random.default_rng(0))
    self.assertLen(chosen, count)
    self.assertLen(np.unique(chosen), count)
    untouched = np.setdiff1d(np.arange(1000), chosen)
    np.testing.assert_array_equal(noisy[untouched], labels[untouched])
    self.assertEqual(noisy.dtype, np.int32)
    self.assertTrue(np.all((noisy >= 0) & (noisy < 7)))

  def test_new_class_is_uniform_and_may_equal_the_old_one(self):
    n = 20_000
    noisy, _ = data.corrupt_labels(np.zeros(n, np.int32), 1.0, 10, np.random.default_rng(1))
    # Each share is a mean of n Bernoulli(0.1): sd 0.0021; 5 sd = 0.0106.
    np.testing.assert_allclose(np.bincount(noisy, minlength=10) / n, 0.1, atol=0.0106)


class ValidationTest(parameterized.TestCase):

  @parameterized.parameters(
      ('validation_fraction', 1.5, 'must be in [0, 1)'),
      ('validation_fraction', 1.0, 'must be in [0, 1)'),
      ('validation_fraction', -0.1, 'must be in [0, 1)'),
      ('validation_fraction', float('nan'), 'must be in [0, 1)'),
      ('validation_fraction', 0.0001, 'must leave >= 1 training and >= 1 validation'),
      ('label_noise', -0.1, 'must be in [0, 1]'),
      ('label_noise', 1.5, 'must be in [0, 1]'),
      ('train_size', -1, 'must be an int >= 0'),
      ('train_size', 1213, 'must be <= 1212'),
      ('split_seed', -1, 'must be an int >= 0'),
      ('name', 'cifar', 'digits | mnist | fashion_mnist | tfds:NAME | npz:PATH'),
      ('name', 'tfds:', 'digits | mnist'),
      ('name', 'npz:', 'digits | mnist'),
  )
  def test_bad_field_raises_one_line_error(self, field, value, problem):
    c = _config()
    c[field] = value
    _assert_one_line_error(self, lambda: data.load_dataset(c), f'data.{field}={value!r}',
                           problem)

  def test_wrong_types_are_rejected(self):
    # ConfigDict keeps field types, so a wrong type is bypassed with a fresh dict.
    c = _config().to_dict()
    c['train_size'] = 2.5
    _assert_one_line_error(self, lambda: data.load_dataset(_Dict(c)), 'data.train_size=2.5')
    c = _config().to_dict()
    c['dir'] = 3
    _assert_one_line_error(self, lambda: data.load_dataset(_Dict(c)), 'data.dir=3')
    c = _config().to_dict()
    c['standardize'] = 1
    _assert_one_line_error(self, lambda: data.load_dataset(_Dict(c)),
                           'data.standardize=1', 'must be True or False')


class _Dict(dict):
  """Attribute access over a plain dict, to pass values ConfigDict would refuse."""
  __getattr__ = dict.__getitem__


# ------------------------------------------------------------------------- IDX files


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
  header = magic.to_bytes(4, 'big') + b''.join(d.to_bytes(4, 'big') for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


def _write_idx_set(folder: Path, gz: bool = True, **replace: bytes) -> dict[str, np.ndarray]:
  """Writes a tiny valid MNIST-like set (6 train, 3 test, 4x5 images); `replace` swaps
  in raw file contents by key (train_images, ...). Returns the arrays written."""
  rng = np.random.default_rng(0)
  arrays = dict(train_images=rng.integers(0, 256, (6, 4, 5), dtype=np.uint8),
                train_labels=np.array([0, 1, 2, 3, 9, 9], np.uint8),
                test_images=rng.integers(0, 256, (3, 4, 5), dtype=np.uint8),
                test_labels=np.array([5, 6, 7], np.uint8))
  for key, stem in data._IDX_FILES.items():  # pylint: disable=protected-access
    magic = 2051 if key.endswith('images') else 2049
    content = replace.get(key, _idx_bytes(arrays[key], magic))
    if content is None:
      continue
    if gz:
      (folder / f'{stem}.gz').write_bytes(gzip.compress(content))
    else:
      (folder / stem).write_bytes(content)
  return arrays


class IdxTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = _tempdir(self)

  @parameterized.parameters(True, False)
  def test_valid_fake_set_round_trips(self, gz):
    arrays = _write_idx_set(self.dir, gz=gz)
    ds = data.load_dataset(_config(name='mnist', dir=str(self.dir), validation_fraction=0.5))
    chex.assert_shape([ds.x_train, ds.x_val], (3, 4, 5, 1))
    chex.assert_shape(ds.x_test, (3, 4, 5, 1))
    np.testing.assert_array_equal(ds.x_test[..., 0] * 255, arrays['test_images'])
    np.testing.assert_array_equal(ds.y_test, [5, 6, 7])
    self.assertEqual(ds.num_classes, 10)
    # Train and validation together are the training file, in some order.
    got = sorted(zip(np.concatenate([ds.y_train, ds.y_val]).tolist(),
                     [r.tobytes() for r in np.concatenate([ds.x_train, ds.x_val])]))
    want = sorted(zip(arrays['train_labels'].tolist(),
                      [(r[..., None] / np.float32(255)).astype(np.float32).tobytes()
                       for r in arrays['train_images']]))
    self.assertEqual(got, want)

  def test_fashion_mnist_reads_the_same_files(self):
    _write_idx_set(self.dir)
    ds = data.load_dataset(_config(name='fashion_mnist', dir=str(self.dir)))
    self.assertEqual(ds.name, 'fashion_mnist')
    chex.assert_shape(ds.x_test, (3, 4, 5, 1))

  def test_errors(self):
    rng = np.random.default_rng(1)
    good_train_images = _idx_bytes(rng.integers(0, 256, (6, 4, 5)), 2051)
    cases = [
        (dict(train_images=_idx_bytes(np.zeros((6, 4, 5)), 2049)),
         'train-images-idx3-ubyte.gz', 'magic number 2049, expected 2051'),
        (dict(test_labels=_idx_bytes(np.zeros(3), 2051)),
         't10k-labels-idx1-ubyte.gz', 'magic number 2051, expected 2049'),
        (dict(train_images=good_train_images[:-7]),
         'train-images-idx3-ubyte.gz', 'has 129 bytes but its header (6, 4, 5) needs 136'),
        (dict(train_images=good_train_images + b'\0'), 'train-images', 'needs 136'),
        (dict(train_labels=b'\0\0'), 'train-labels', 'has 2 bytes, too short'),
        (dict(train_labels=_idx_bytes(np.zeros(5), 2049)),
         'train-images-idx3-ubyte', 'holds 6 images but train-labels-idx1-ubyte holds 5'),
        (dict(test_labels=_idx_bytes(np.array([1, 12, 3]), 2049)),
         't10k-labels-idx1-ubyte', 'label 12 at index 1 is outside [0, 10)'),
        (dict(test_images=None), 't10k-images-idx3-ubyte.gz', 'not found'),
    ]
    for i, (replace, path_part, problem) in enumerate(cases):
      with self.subTest(problem=problem):
        folder = self.dir / str(i)
        folder.mkdir()
        _write_idx_set(folder, **replace)
        _assert_one_line_error(
            self, lambda f=folder: data.load_dataset(_config(name='mnist', dir=str(f))),
            f'data.dir={str(folder)!r}', path_part, problem)

  def test_truncated_gzip_is_reported(self):
    _write_idx_set(self.dir)
    path = self.dir / 'train-images-idx3-ubyte.gz'
    path.write_bytes(path.read_bytes()[:30])
    _assert_one_line_error(
        self, lambda: data.load_dataset(_config(name='mnist', dir=str(self.dir))),
        'data.dir', str(path), 'truncated or corrupt')

  def test_missing_folder(self):
    missing = str(self.dir / 'nope')
    _assert_one_line_error(
        self, lambda: data.load_dataset(_config(name='mnist', dir=missing)),
        f'data.dir={missing!r}', 'is not a folder')


class RealMnistTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.mnist_dir = paths.mnist_dir()
    if self.mnist_dir is None:
      self.skipTest(f'MNIST IDX files not found at {paths.mnist_search_dir()}; '
                    'set REGJAX_MNIST_DIR')

  def test_shapes_ranges_and_known_label_counts(self):
    ds = data.load_dataset(_config(name='mnist', dir=str(self.mnist_dir),
                                   validation_fraction=0.1))
    chex.assert_shape(ds.x_train, (54000, 28, 28, 1))
    chex.assert_shape(ds.x_val, (6000, 28, 28, 1))
    chex.assert_shape(ds.x_test, (10000, 28, 28, 1))
    for x in (ds.x_train, ds.x_val, ds.x_test):
      self.assertEqual(x.dtype, np.float32)
      self.assertEqual((x.min(), x.max()), (0.0, 1.0))
    for y in (ds.y_train, ds.y_val, ds.y_test):
      self.assertEqual(y.dtype, np.int32)
    self.assertEqual(ds.num_classes, 10)
    pool_labels = np.concatenate([ds.y_train, ds.y_val])
    np.testing.assert_array_equal(np.bincount(pool_labels), MNIST_TRAIN_COUNTS)
    np.testing.assert_array_equal(np.bincount(ds.y_test), MNIST_TEST_COUNTS)
    # Mean pixel: the well-known normalization constants 0.1307 (train) and 0.1325
    # (test), to more digits; /256 instead of /255 would shift them by 5e-4.
    pool_mean = (ds.x_train.sum(dtype=np.float64) + ds.x_val.sum(dtype=np.float64)) / (
        60000 * 784)
    self.assertAlmostEqual(pool_mean, 0.130660, delta=1e-5)
    self.assertAlmostEqual(ds.x_test.mean(dtype=np.float64), 0.132515, delta=1e-5)

  def test_no_validation_keeps_the_whole_pool(self):
    ds = data.load_dataset(_config(name='mnist', dir=str(self.mnist_dir),
                                   validation_fraction=0.0, train_size=60000))
    chex.assert_shape(ds.x_train, (60000, 28, 28, 1))
    np.testing.assert_array_equal(np.bincount(ds.y_train), MNIST_TRAIN_COUNTS)


# ------------------------------------------------------------------------------ TFDS


class TfdsTest(parameterized.TestCase):
  """TFDS through `tfds.data_source`, which mock_data serves without TensorFlow."""

  def setUp(self):
    super().setUp()
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    # mock_data makes download_and_prepare a no-op and serves random examples from the
    # builder's feature spec, so nothing is fetched or written.
    self.tfds = tfds

  @parameterized.parameters(('mnist', (28, 28, 1)), ('fashion_mnist', (28, 28, 1)),
                            ('tfds:cifar10', (32, 32, 3)))
  def test_mocked_dataset_loads_as_numpy(self, name, image_shape):
    with self.tfds.testing.mock_data(num_examples=20):
      ds = data.load_dataset(_config(name=name, validation_fraction=0.1))
      again = data.load_dataset(_config(name=name, validation_fraction=0.1))
    chex.assert_shape(ds.x_train, (18, *image_shape))
    chex.assert_shape(ds.x_val, (2, *image_shape))
    chex.assert_shape(ds.x_test, (20, *image_shape))  # The test split is not split.
    self.assertEqual(ds.x_train.dtype, np.float32)
    self.assertBetween(float(ds.x_train.min()), 0.0, 1.0)
    self.assertBetween(float(ds.x_train.max()), 0.5, 1.0)  # Mock pixels span 0..255.
    self.assertEqual(ds.num_classes, 10)
    self.assertTrue(np.all((ds.y_test >= 0) & (ds.y_test < 10)))
    np.testing.assert_array_equal(ds.x_train, again.x_train)

  @parameterized.parameters(
      ('tfds:imdb_reviews', "TFDS features are ['label', 'text']"),
      ('tfds:oxford_flowers102', 'TFDS image shape (None, None, 3) is not a fixed'),
      ('tfds:no_such_dataset_xyz', 'TFDS could not load it (DatasetNotFoundError'),
  )
  def test_unusable_tfds_dataset(self, name, problem):
    with self.tfds.testing.mock_data(num_examples=3):
      _assert_one_line_error(self, lambda: data.load_dataset(_config(name=name)),
                             f'data.name={name!r}', problem)

  def test_tfds_failure_becomes_one_line_error(self):
    failure = RuntimeError('No module named tensorflow\nand a long traceback')
    with mock.patch.object(self.tfds, 'data_source', side_effect=failure):
      msg = _assert_one_line_error(self, lambda: data.load_dataset(_config(name='mnist')))
    self.assertEqual(
        msg, "data.name='mnist': TFDS could not load it (RuntimeError: No module named "
        'tensorflow); set data.dir to a folder with the four MNIST IDX .gz files, or use '
        'data.name=digits')

  def test_importing_regjax_data_does_not_import_tfds(self):
    code = 'import sys, regjax.data; print("tensorflow_datasets" in sys.modules)'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    self.assertEqual(out.stdout.strip(), 'False')


# ------------------------------------------------------------------------------- npz


class NpzTest(parameterized.TestCase):

  def _write(self, **arrays) -> str:
    path = _tempdir(self) / 'd.npz'
    np.savez(path, **arrays)
    return str(path)

  def test_uint8_round_trip_adds_channel_and_scales(self):
    rng = np.random.default_rng(0)
    x_test = rng.integers(0, 256, (4, 3, 2), dtype=np.uint8)
    path = self._write(x_train=rng.integers(0, 256, (10, 3, 2), dtype=np.uint8),
                       y_train=np.array([0, 1, 2, 3] * 2 + [0, 1]), x_test=x_test,
                       y_test=np.array([0, 1, 4, 2]))
    ds = data.load_dataset(_config(name=f'npz:{path}', validation_fraction=0.2))
    chex.assert_shape(ds.x_train, (8, 3, 2, 1))
    chex.assert_shape(ds.x_val, (2, 3, 2, 1))
    np.testing.assert_allclose(ds.x_test[..., 0], x_test / 255.0, rtol=1e-6)
    self.assertEqual(ds.num_classes, 5)  # Max label 4 appears only in the test set.
    self.assertEqual(ds.y_test.dtype, np.int32)

  def test_float_images_and_split_bookkeeping(self):
    # Each image holds its own index, so the split can be read back exactly.
    n = 100
    x = np.broadcast_to((np.arange(n) / n).astype(np.float32)[:, None, None, None],
                        (n, 2, 2, 3))
    path = self._write(x_train=x, y_train=np.arange(n) % 3, x_test=x[:5],
                       y_test=np.zeros(5, np.int64))
    def ids(images):
      return np.rint(images[:, 0, 0, 0] * n).astype(int)
    full = data.load_dataset(_config(name=f'npz:{path}', validation_fraction=0.3,
                                     split_seed=5))
    small = data.load_dataset(_config(name=f'npz:{path}', validation_fraction=0.3,
                                      split_seed=5, train_size=20))
    train_ids, val_ids = ids(full.x_train), ids(full.x_val)
    self.assertLen(val_ids, 30)
    self.assertEmpty(np.intersect1d(train_ids, val_ids))
    np.testing.assert_array_equal(np.sort(np.concatenate([train_ids, val_ids])),
                                  np.arange(n))
    np.testing.assert_array_equal(full.y_train, train_ids % 3)  # Labels follow images.
    np.testing.assert_array_equal(ids(small.x_val), val_ids)
    np.testing.assert_array_equal(ids(small.x_train), train_ids[:20])
    np.testing.assert_array_equal(full.x_test, x[:5])

  @parameterized.parameters(np.float64, np.float32, np.int64, np.int16)
  def test_feature_table_in_any_range_loads_unchanged(self, dtype):
    # Each row's first feature is its index, so rows can be followed through the split;
    # the other values are far outside [0, 1] and negative.
    n, d = 50, 4
    rng = np.random.default_rng(1)
    x = np.concatenate([np.arange(n)[:, None], rng.integers(-3000, 3000, (n, d - 1))],
                       axis=1).astype(dtype)
    x_test = rng.integers(-5000, 5000, (7, d)).astype(dtype)
    if np.issubdtype(dtype, np.floating):
      x_test /= 4  # Fractions too.
    path = self._write(x_train=x, y_train=np.arange(n) % 2, x_test=x_test,
                       y_test=np.array([0, 1, 1, 0, 0, 1, 0], np.uint8))
    ds = data.load_dataset(_config(name=f'npz:{path}', validation_fraction=0.2))
    chex.assert_shape(ds.x_train, (40, d))
    chex.assert_shape(ds.x_val, (10, d))
    chex.assert_shape(ds.x_test, (7, d))
    for split in (ds.x_train, ds.x_val, ds.x_test):
      self.assertEqual(split.dtype, np.float32)
    np.testing.assert_array_equal(ds.x_test, x_test.astype(np.float32))
    rows = np.concatenate([ds.x_train, ds.x_val])
    np.testing.assert_array_equal(rows[np.argsort(rows[:, 0])], x.astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, ds.x_train[:, 0].astype(int) % 2)
    self.assertEqual(ds.num_classes, 2)

  def test_float_images_outside_unit_range_keep_values_and_get_a_channel(self):
    x = np.linspace(-2.5, 300.0, 6 * 3 * 2).reshape(6, 3, 2)
    path = self._write(x_train=x, y_train=np.zeros(6, np.int32), x_test=x[:2] * -1,
                       y_test=np.array([0, 3]))
    ds = data.load_dataset(_config(name=f'npz:{path}', validation_fraction=0.0))
    chex.assert_shape(ds.x_test, (2, 3, 2, 1))
    np.testing.assert_array_equal(ds.x_test[..., 0], (x[:2] * -1).astype(np.float32))
    self.assertEqual(ds.num_classes, 4)

  def test_uint8_feature_table_is_scaled_like_images(self):
    x = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    path = self._write(x_train=x, y_train=np.array([0, 1, 0]), x_test=x,
                       y_test=np.array([0, 1, 0]))
    ds = data.load_dataset(_config(name=f'npz:{path}', validation_fraction=0.0))
    np.testing.assert_allclose(ds.x_test, x / 255.0, rtol=1e-6)

  def test_mlp_learns_a_separable_feature_table(self):
    # 3 well separated Gaussian blobs in 6 features of scale ~10, far outside [0, 1]: an
    # MLP that receives the (N, D) table as is reaches far above chance (1/3).
    from regjax import train  # Lazy: only this test needs JAX training.
    rng = np.random.default_rng(0)
    centers = rng.uniform(-30.0, 30.0, (3, 6))
    def table(n):
      y = rng.integers(0, 3, n)
      return centers[y] + rng.normal(0.0, 3.0, (n, 6)), y
    x_train, y_train = table(600)
    x_test, y_test = table(200)
    path = self._write(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    config = schema.default_config()
    config.data.name = f'npz:{path}'
    config.model.widths = (32,)
    config.train.epochs = 3
    config.train.batch_size = 32
    ds = data.load_dataset(config.data)
    chex.assert_shape(ds.x_train, (540, 6))
    record, history, variables = train.fit(config, ds, seed=0)
    self.assertLen(history, 3)
    # The first Dense sees the 6 features as they are, not a flattened image.
    chex.assert_shape(variables['params']['Dense_0']['kernel'], (6, 32))
    self.assertGreater(record['test_accuracy'], 0.9)

  def test_bad_files(self):
    good = dict(x_train=np.zeros((4, 3, 3), np.uint8), y_train=np.array([0, 1, 0, 1]),
                x_test=np.zeros((2, 3, 3), np.uint8), y_test=np.array([0, 1]))
    cases = [
        (dict(y_test=None), 'lacks y_test'),
        (dict(x_train=np.zeros(4, np.uint8)), 'x_train has shape (4,); expected (N, D)'),
        (dict(x_train=np.zeros((4, 3, 3, 1, 1), np.uint8)),
         'x_train has shape (4, 3, 3, 1, 1)'),
        (dict(x_train=np.zeros((4, 0), np.uint8)), 'x_train has shape (4, 0)'),
        (dict(y_train=np.array([0, 1, 0])), 'y_train has shape (3,); expected (4,)'),
        (dict(x_train=np.zeros((4, 3, 3), np.float32),
              x_test=np.full((2, 3, 3), np.nan, np.float32)), 'x_test has NaN'),
        (dict(x_train=np.full((4, 3, 3), 1e300), x_test=np.zeros((2, 3, 3))),
         "x_train has values beyond float32's range"),
        (dict(y_train=np.array([0, -1, 0, 1])), 'y_train has a negative label (-1)'),
        (dict(y_train=np.array([0.0, 1.0, 0.0, 1.0])), 'y_train is float64'),
        (dict(x_train=np.zeros((4, 3, 3), bool)), 'x_train is bool'),
        # uint8 is scaled by 1/255, other dtypes are not: a mix would split the scales.
        (dict(x_train=np.zeros((4, 3, 3), np.int64)),
         'x_train is int64 but x_test is uint8; both must be uint8'),
        (dict(x_test=np.zeros((2, 4, 4), np.uint8)),
         'x_train examples are (3, 3, 1) but x_test examples are (4, 4, 1)'),
        (dict(x_train=np.zeros((0, 3, 3), np.uint8), y_train=np.zeros(0, np.int64)),
         'x_train and y_train are empty'),
        (dict(y_train=np.array([None] * 4, dtype=object)), 'cannot read'),
    ]
    for replace, problem in cases:
      with self.subTest(problem=problem):
        arrays = {k: v for k, v in {**good, **replace}.items() if v is not None}
        name = f'npz:{self._write(**arrays)}'
        _assert_one_line_error(self, lambda n=name: data.load_dataset(_config(name=n)),
                               f'data.name={name!r}', problem)

  def test_missing_or_non_npz_file(self):
    folder = _tempdir(self)
    (folder / 'text.npz').write_text('not a zip')
    for path in (folder / 'absent.npz', folder / 'text.npz'):
      with self.subTest(path=str(path)):
        _assert_one_line_error(
            self, lambda p=path: data.load_dataset(_config(name=f'npz:{p}')),
            f"data.name='npz:{path}'", f'cannot read {path} as .npz')


# ------------------------------------------------------------------------ standardize


def _blobs(rng: np.random.Generator, n: int, centers: np.ndarray, noise: float,
           offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """n points around `centers` (K, D) with Gaussian noise, shifted by `offset` (D,)."""
  y = rng.integers(0, len(centers), n)
  return offset + centers[y] + rng.normal(0.0, noise, (n, centers.shape[1])), y


class StandardizeTest(parameterized.TestCase):

  def _npz(self, **arrays) -> str:
    """'npz:PATH' of a new file holding `arrays`."""
    path = _tempdir(self) / 'd.npz'
    np.savez(path, **arrays)
    return f'npz:{path}'

  def _table(self, n=60, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, d)) * [1.0, 10.0, 1e3, 1e4, 0.0] + [0, -5, 7e3, 2e4, 3.5]
    x_test = rng.normal(0.0, 1.0, (9, d)) * 1e4
    return dict(x_train=x, y_train=np.arange(n) % 3, x_test=x_test,
                y_test=np.arange(9) % 3)

  def test_statistics_come_from_the_training_split_only(self):
    arrays = self._table()
    c = dict(validation_fraction=0.25, split_seed=3, standardize=True)
    ds = data.load_dataset(_config(name=self._npz(**arrays), **c))
    x_train = arrays['x_train'].astype(np.float32)[ds.train_idx].astype(np.float64)
    np.testing.assert_allclose(ds.feature_shift, x_train.mean(0), rtol=1e-6)
    np.testing.assert_allclose(ds.feature_scale[:4], 1 / x_train.std(0)[:4], rtol=1e-6)
    # The constant fifth feature: scale 1, decoded to exactly 0 everywhere in training.
    self.assertEqual(ds.feature_scale[4], 1.0)
    np.testing.assert_array_equal(ds.x_train[:, 4], 0.0)
    # Standardized training features: mean 0 and std 1 (up to float32 rounding).
    np.testing.assert_allclose(ds.x_train[:, :4].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train[:, :4].std(0), 1.0, rtol=1e-5)
    # Validation and test examples do not count: change them and nothing moves.
    changed = dict(arrays, x_train=arrays['x_train'].copy(), x_test=arrays['x_test'] * 50)
    changed['x_train'][ds.val_idx] = 1e6
    other = data.load_dataset(_config(name=self._npz(**changed), **c))
    np.testing.assert_array_equal(other.feature_shift, ds.feature_shift)
    np.testing.assert_array_equal(other.feature_scale, ds.feature_scale)
    self.assertGreater(np.abs(other.x_val).min(), 10.0)  # The changed rows decode far out.
    # Without standardize nothing is computed and decoding keeps the values.
    plain = data.load_dataset(_config(name=self._npz(**arrays),
                                      validation_fraction=0.25, split_seed=3))
    self.assertIsNone(plain.feature_shift)
    np.testing.assert_array_equal(plain.x_test, arrays['x_test'].astype(np.float32))

  def test_each_split_has_its_own_statistics(self):
    name = self._npz(**self._table())
    # Two splits of one loaded source, as experiment.plan makes them per replicate.
    source = data.load_source(_config(name=name, standardize=True))
    a = data.split(source, _config(name=name, split_seed=0, standardize=True))
    b = data.split(source, _config(name=name, split_seed=1, standardize=True))
    self.assertFalse(np.array_equal(a.feature_shift, b.feature_shift))
    self.assertTrue(a.same_source(b))  # Each run decodes with its own statistics.
    plain = data.split(source, _config(name=name, split_seed=0))
    self.assertFalse(a.same_source(plain))  # Standardized or not is the program's.

  def test_runs_with_their_own_statistics_share_a_program(self):
    from regjax import train  # Lazy: only these tests need JAX training.
    config = schema.default_config()
    config.data.update(name=self._npz(**self._table(n=90)), standardize=True)
    config.model.widths = (8,)
    config.train.update(epochs=2, batch_size=16)
    source = data.load_source(config.data)
    one = data.split(source, config.data)
    resplit_config = config.data.copy_and_resolve_references()
    resplit_config.split_seed = 5
    resplit = data.split(source, resplit_config)
    # Its own split of the same stored inputs, with other statistics.
    self.assertIs(resplit.pool, one.pool)
    self.assertFalse(np.array_equal(resplit.feature_shift, one.feature_shift))
    # One vmapped program: the statistics travel with each run's arrays, in training
    # and in the final evaluation, so each run gives what it gives alone.
    together = train.RunGroup([train.Run(config, 0, one), train.Run(config, 1, resplit)]
                              ).fit()
    for (record, _, _), split, seed in zip(together, (one, resplit), (0, 1)):
      alone = train.fit(config, split, seed=seed)[0]
      self.assertEqual(record['test_accuracy'], alone['test_accuracy'])
      self.assertAlmostEqual(record['test_loss'], alone['test_loss'], places=5)
      self.assertAlmostEqual(record['val_loss'], alone['val_loss'], places=5)
    self.assertNotEqual(together[0][0]['test_loss'], together[1][0]['test_loss'])

  def test_uint8_images_are_decoded_then_standardized(self):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (20, 3, 3), dtype=np.uint8)
    x[:, 0, 0] = 7  # A constant pixel.
    name = self._npz(x_train=x, y_train=np.arange(20) % 2, x_test=x[:4],
                     y_test=np.zeros(4, int))
    ds = data.load_dataset(_config(name=name, validation_fraction=0.0, standardize=True))
    images = x[..., None].astype(np.float32) / np.float32(255)
    expected = (images - images.mean(0, dtype=np.float64).astype(np.float32))
    np.testing.assert_allclose(ds.x_test, (expected * ds.feature_scale)[:4], atol=1e-5)
    np.testing.assert_allclose(ds.feature_scale[1, 1, 0], 1 / images[:, 1, 1, 0].std(),
                               rtol=1e-5)
    np.testing.assert_array_equal(ds.x_test[:, 0, 0, 0], 0.0)

  def test_device_decoding_equals_host_decoding_bit_for_bit(self):
    import jax  # Lazy: only the trainer's decoding needs JAX.
    from regjax import trainer
    rng = np.random.default_rng(4)
    for x in (rng.integers(0, 256, (30, 4, 4), dtype=np.uint8),
              rng.normal(3e3, 2e3, (30, 7))):
      with self.subTest(dtype=str(x.dtype)):
        name = self._npz(x_train=x, y_train=np.arange(30) % 2, x_test=x[:5],
                         y_test=np.zeros(5, int))
        ds = data.load_dataset(_config(name=name, standardize=True))
        on_device = jax.jit(trainer.decode)(ds.test, ds.decode_table, ds.feature_shift,
                                            ds.feature_scale)
        np.testing.assert_array_equal(np.asarray(on_device), ds.x_test)

  def test_mlp_learns_a_large_scale_feature_table_when_standardized(self):
    # 3 Gaussian classes (centers ~3e3 apart, noise 1e3) in 6 features offset by up to
    # 3e4: standardized, a small MLP separates them in 3 epochs (0.99 test accuracy
    # measured); fed the raw values it reached 0.78.
    from regjax import train  # Lazy: only this test needs JAX training.
    rng = np.random.default_rng(0)
    centers = rng.normal(0.0, 3.0, (3, 6)) * 1e3
    offset = rng.uniform(-3e4, 3e4, 6)
    x_train, y_train = _blobs(rng, 600, centers, 1e3, offset)
    x_test, y_test = _blobs(rng, 200, centers, 1e3, offset)
    name = self._npz(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    config = schema.default_config()
    config.data.name = name
    config.data.standardize = True
    config.model.widths = (32,)
    config.train.epochs = 3
    ds = data.load_dataset(config.data)
    self.assertGreater(np.abs(ds.pool).mean(), 5e3)  # Stored as given: scale ~1e4.
    record, history, _ = train.fit(config, ds, seed=0)
    self.assertLen(history, 3)
    self.assertGreater(record['test_accuracy'], 0.9)
    self.assertGreater(history[-1]['val_accuracy'], 0.9)

  def test_equals_training_on_data_standardized_by_hand(self):
    # Standardize by hand with the split's training statistics, store that, and train
    # without `standardize`: the same history as standardizing while decoding.
    from regjax import train  # Lazy: only this test needs JAX training.
    rng = np.random.default_rng(1)
    centers = rng.normal(0.0, 2.0, (3, 5)) * 50
    x_train, y_train = _blobs(rng, 300, centers, 60.0, rng.uniform(-500, 500, 5))
    x_test, y_test = _blobs(rng, 80, centers, 60.0, np.zeros(5))
    raw = self._npz(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    config = schema.default_config()
    config.model.widths = (16,)
    config.train.epochs = 4
    config.data.name = raw
    config.data.standardize = True
    on_the_fly = data.load_dataset(config.data)
    shift, scale = on_the_fly.feature_shift, on_the_fly.feature_scale
    by_hand = lambda x: (x.astype(np.float32) - shift) * scale
    config_hand = schema.default_config()
    config_hand.model.widths = (16,)
    config_hand.train.epochs = 4
    config_hand.data.name = self._npz(x_train=by_hand(x_train), y_train=y_train,
                                      x_test=by_hand(x_test), y_test=y_test)
    stored = data.load_dataset(config_hand.data)
    self.assertIsNone(stored.feature_shift)
    np.testing.assert_array_equal(stored.x_train, on_the_fly.x_train)
    rec_a, hist_a, _ = train.fit(config, on_the_fly, seed=0)
    rec_b, hist_b, _ = train.fit(config_hand, stored, seed=0)
    for row_a, row_b in zip(hist_a, hist_b, strict=True):
      for key in ('train_loss', 'val_loss', 'val_accuracy', 'weight_l2'):
        self.assertAlmostEqual(row_a[key], row_b[key], delta=1e-6, msg=key)
    self.assertAlmostEqual(rec_a['test_loss'], rec_b['test_loss'], delta=1e-6)
    self.assertEqual(rec_a['test_accuracy'], rec_b['test_accuracy'])
    self.assertNotAlmostEqual(hist_a[-1]['train_loss'], hist_a[0]['train_loss'], places=3)


if __name__ == '__main__':
  absltest.main()
