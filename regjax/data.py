"""Datasets as numpy splits: loading, the train/validation split, subsampling, label noise.

Sources (`data.name`):
  digits         scikit-learn's bundled 8x8 digits (1,797 images, no download). It has no
                 official test split, so a FIXED stratified 25% (450 images, chosen with
                 `train_test_split(..., stratify=y, random_state=0)`) is the test set,
                 independent of `data.split_seed`; the other 1,347 are the training pool.
  mnist          MNIST / Fashion-MNIST. With `data.dir` set, read from the four IDX files
  fashion_mnist  there (.gz or uncompressed); with `data.dir` empty, through TFDS.
  tfds:NAME      Any TFDS image-classification dataset with `image` and `label` features
                 and train/test splits.
  npz:PATH       A .npz file with x_train, y_train, x_test, y_test. x: (N, D), (N, H, W)
                 or (N, H, W, C); uint8 is scaled to [0, 1], other dtypes keep their
                 values (see `_load_npz` and README.md, "MNIST and other data").
`data.dir` is read only by mnist and fashion_mnist.

Splits. The official training split is the pool; the official test split is the test set
and is never touched by splitting, subsampling or label noise. With
`rng = np.random.default_rng(data.split_seed)`:
  1. `perm = rng.permutation(n_pool)`; the first `round(validation_fraction * n_pool)`
     indices of `perm` are the validation set, the rest the training set, truncated to
     its first `train_size` examples when `train_size > 0`. So sweeping `train_size`
     keeps the validation set fixed, and smaller training sets are prefixes of bigger
     ones.
  2. Label noise: exactly `round(label_noise * n_train)` training examples, chosen
     without replacement with the same `rng`, get a class drawn uniformly from all
     `num_classes` classes -- which may equal the true class (as in Zhang et al. 2017,
     "Understanding deep learning requires rethinking generalization"), so the expected
     share of changed labels is `label_noise * (1 - 1 / num_classes)`. Validation and
     test labels are never changed.
`round` is Python's (half to even). The same `split_seed` gives identical arrays.

Standardization (`data.standardize`): each input feature (each position of one example)
is shifted by its mean and scaled by 1 / its standard deviation over the TRAINING split
of this split (`train_idx` rows, decoded; validation and test rows never count), a
feature with std 0 scaled by 1 (so a constant feature becomes 0). It is part of decoding
(`Dataset.decode`, and regjax/trainer.py `decode` in a program): the stored inputs stay
as they are, and each split carries its own `feature_shift` / `feature_scale`.

Model inputs are float32 of shape (N, H, W, C): images in [0, 1] (uint8 images are stored
as uint8 and decoded when used); an npz file may instead give a feature table (N, D), and
its non-uint8 values are kept unchanged, in any finite range. Labels are int32 in
[0, num_classes).
The arrays of a `Dataset` are read-only, so a dataset shared by several runs cannot be
changed by one of them.
"""

import dataclasses
import functools
import gzip
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from regjax.errors import ConfigError

_ALLOWED_NAMES = 'digits | mnist | fashion_mnist | tfds:NAME | npz:PATH'
_IDX_IMAGE_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions.
_IDX_LABEL_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension.
_IDX_FILES = {
    'train_images': 'train-images-idx3-ubyte',
    'train_labels': 'train-labels-idx1-ubyte',
    'test_images': 't10k-images-idx3-ubyte',
    'test_labels': 't10k-labels-idx1-ubyte',
}
_DIGITS_TEST_FRACTION = 0.25
_DIGITS_TEST_SEED = 0


@dataclasses.dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous: compare fields.
class Dataset:
  """One split of a dataset: the training pool, index views into it, and the test set.

  The inputs are kept once, as the source stores them (`pool`, `test`: uint8 images, or
  float32), and a split is index arrays into the pool, so that resplitting (a replicate's
  own validation split and label noise) copies no inputs and a training program reads
  its batches straight from the pool. `decode` turns stored inputs into model inputs.

  Attributes:
    name: the `data.name` it was loaded from.
    num_classes: labels are int32 in [0, num_classes).
    pool: (N_pool, ...) the official training split's inputs: uint8 images (decoded to
      [0, 1]) or float32 values used as they are (images, or (N, D) feature tables from
      an npz file, in any finite range).
    pool_labels: (N_pool,) int32 clean labels of the pool.
    train_idx: (n_train,) int32 pool rows used for training.
    y_train: (n_train,) int32 their training labels (label noise applied).
    val_idx: (n_val,) int32 pool rows held out for validation (clean labels).
    test: (N_test, ...) the official test split's inputs, stored like `pool`.
    y_test: (N_test,) int32.
    decode_table: (256,) float32 value of each uint8 input, or None for float inputs.
      A lookup rather than a division: it gives the same float32 on the host (numpy)
      and in a compiled program (XLA turns a division by a constant into a multiply).
    split_seed: the `data.split_seed` of this split.
    feature_shift, feature_scale: float32 arrays of one example's shape (the decoded
      inputs' per-feature training mean, and 1 / their std, 1 where the std is 0), or
      None without `data.standardize`. Decoding gives (x - shift) * scale: a multiply by
      a stored reciprocal, so numpy and XLA give the same float32.
  Derived (decoded float32 copies, made on first use): x_train, x_val, x_test, and
  y_val, y_train_clean (the training labels before label noise).
  """
  name: str
  num_classes: int
  pool: np.ndarray
  pool_labels: np.ndarray
  train_idx: np.ndarray
  y_train: np.ndarray
  val_idx: np.ndarray
  test: np.ndarray
  y_test: np.ndarray
  decode_table: np.ndarray | None
  split_seed: int = 0
  feature_shift: np.ndarray | None = None
  feature_scale: np.ndarray | None = None

  @property
  def num_train(self) -> int:
    """Training examples (n_train)."""
    return len(self.train_idx)

  @property
  def num_val(self) -> int:
    """Validation examples (n_val; 0 without a validation split)."""
    return len(self.val_idx)

  @property
  def standardized(self) -> bool:
    """Whether decoding standardizes the features (`data.standardize`)."""
    return self.feature_shift is not None

  def decode(self, raw: np.ndarray) -> np.ndarray:
    """Stored inputs (B, ...) -> float32 model inputs (B, ...)."""
    x = _decode_stored(raw, self.decode_table)
    if self.feature_shift is not None:
      # The same two float32 operations as regjax/trainer.py `decode`.
      x = (x - self.feature_shift) * self.feature_scale
    return x

  @functools.cached_property
  def x_train(self) -> np.ndarray:
    """(n_train, ...) float32 training inputs (a decoded copy)."""
    return _read_only(self.decode(self.pool[self.train_idx]))

  @functools.cached_property
  def x_val(self) -> np.ndarray:
    """(n_val, ...) float32 validation inputs (a decoded copy)."""
    return _read_only(self.decode(self.pool[self.val_idx]))

  @functools.cached_property
  def x_test(self) -> np.ndarray:
    """(N_test, ...) float32 test inputs (a decoded copy)."""
    return _read_only(self.decode(self.test))

  @functools.cached_property
  def y_val(self) -> np.ndarray:
    """(n_val,) int32 validation labels."""
    return _read_only(self.pool_labels[self.val_idx])

  @functools.cached_property
  def y_train_clean(self) -> np.ndarray:
    """(n_train,) int32 training labels before label noise."""
    return _read_only(self.pool_labels[self.train_idx])

  def same_source(self, other: 'Dataset') -> bool:
    """Whether `other` is a split of the same loaded pool and test set, standardized or
    not alike (each split's statistics are its own)."""
    return (other.pool is self.pool and other.test is self.test
            and self.standardized == other.standardized)


def _decode_stored(raw: np.ndarray, table: np.ndarray | None) -> np.ndarray:
  """Stored inputs -> float32, before any standardization (see `Dataset.decode`)."""
  if table is not None:
    return table[raw]
  return np.asarray(raw, np.float32)


def feature_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(shift, scale) standardizing decoded inputs x (N, ...): float32 of x's example shape.

  shift = the per-feature mean and scale = 1 / the per-feature (population) standard
  deviation, both computed in float64 and rounded to float32; scale is 1 where the std
  is 0 (a constant feature is shifted to 0, not divided by 0).
  """
  x64 = np.asarray(x, np.float64)
  mean = x64.mean(axis=0)
  std = x64.std(axis=0)
  scale = np.ones_like(std)
  np.divide(1.0, std, out=scale, where=std > 0)
  return _read_only(mean.astype(np.float32)), _read_only(scale.astype(np.float32))


def _read_only(a: np.ndarray) -> np.ndarray:
  a.setflags(write=False)
  return a


@dataclasses.dataclass(frozen=True)
class _Raw:
  """A source before splitting: inputs (N, ...) as stored (uint8 images, or float
  values), int labels, and the class count."""
  x_pool: np.ndarray
  y_pool: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int


def load_dataset(data_config: ml_collections.ConfigDict) -> Dataset:
  """Loads `data_config.name` and splits it as the module docstring describes.

  Args:
    data_config: `config.data` (name, dir, train_size, validation_fraction,
      label_noise, split_seed, standardize).

  Returns:
    The Dataset (see its docstring; `x_train` etc. are float32, images in [0, 1]).

  Raises:
    ConfigError: a bad field, or a data file that is missing or corrupt.
  """
  return split(load_source(data_config), data_config)


def load_source(data_config: ml_collections.ConfigDict) -> '_Raw':
  """The unsplit source of `data_config.name`: pool and test inputs as stored, labels.

  `split(source, data_config)` then makes a Dataset; several splits of one source (e.g.
  one per replicate) share its arrays.
  """
  _validate_fields(data_config)
  name = data_config.name
  if name == 'digits':
    raw = _load_digits()
  elif name in ('mnist', 'fashion_mnist'):
    if data_config.dir:
      raw = _load_idx_dir(data_config.dir)
    else:
      raw = _load_tfds(name, value=name, hint=(
          'set data.dir to a folder with the four MNIST IDX .gz files, or use '
          'data.name=digits'))
  elif name.startswith('tfds:') and len(name) > len('tfds:'):
    raw = _load_tfds(name[len('tfds:'):], value=name,
                     hint='use data.name=digits or npz:PATH instead')
  elif name.startswith('npz:') and len(name) > len('npz:'):
    raw = _load_npz(name[len('npz:'):], value=name)
  else:
    raise ConfigError('data.name', name, f'must be one of {_ALLOWED_NAMES}')
  # Stored once for every split: uint8 stays uint8 (a quarter of float32's memory),
  # anything else becomes float32; all read-only, so no run can change a shared array.
  def inputs(x):
    return _read_only(x if x.dtype == np.uint8 else np.array(x, np.float32, copy=True))

  def labels(y):
    return _read_only(np.array(y, np.int32, copy=True))

  return _Raw(inputs(raw.x_pool), labels(raw.y_pool), inputs(raw.x_test),
              labels(raw.y_test), raw.num_classes)


def corrupt_labels(labels: np.ndarray, fraction: float, num_classes: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Gives exactly round(fraction * len(labels)) labels a uniformly random class.

  The new class may equal the old one (Zhang et al. 2017), so on average only
  fraction * (1 - 1 / num_classes) of the labels change.

  Args:
    labels: int labels, shape (N,).
    fraction: share of labels to redraw, in [0, 1].
    num_classes: classes are drawn from [0, num_classes).
    rng: the generator; it chooses the indices, then the new classes.

  Returns:
    (new labels as int32, shape (N,); the sorted chosen indices, shape (K,)).
  """
  n = len(labels)
  count = round(fraction * n)
  chosen = np.sort(rng.choice(n, size=count, replace=False))
  noisy = np.array(labels, dtype=np.int32, copy=True)
  noisy[chosen] = rng.integers(0, num_classes, size=count, dtype=np.int32)
  return noisy, chosen


def _validate_fields(c: ml_collections.ConfigDict) -> None:
  """Checks each field's type and range (counts that need the data come later)."""
  if not isinstance(c.name, str) or not c.name:
    raise ConfigError('data.name', c.name, f'must be one of {_ALLOWED_NAMES}')
  if not isinstance(c.dir, str):
    raise ConfigError('data.dir', c.dir, "must be a folder path (str), or '' for TFDS")
  if not _is_int(c.train_size) or c.train_size < 0:
    raise ConfigError('data.train_size', c.train_size,
                      'must be an int >= 0 (0 = the whole training split)')
  if not _is_real(c.validation_fraction) or not 0 <= c.validation_fraction < 1:
    raise ConfigError('data.validation_fraction', c.validation_fraction,
                      'must be in [0, 1)')
  if not _is_real(c.label_noise) or not 0 <= c.label_noise <= 1:
    raise ConfigError('data.label_noise', c.label_noise, 'must be in [0, 1]')
  if not _is_int(c.split_seed) or c.split_seed < 0:
    raise ConfigError('data.split_seed', c.split_seed, 'must be an int >= 0')
  if not isinstance(_standardize(c), bool):
    raise ConfigError('data.standardize', _standardize(c), 'must be True or False')


def _standardize(c: ml_collections.ConfigDict) -> Any:
  # Configs written before the field existed (a workdir's config.json) do not have it.
  return c.get('standardize', False)


def _is_int(v: Any) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
  return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def split(raw: '_Raw', c: ml_collections.ConfigDict) -> Dataset:
  """Validation split, train_size subsample and label noise of `raw` (module docstring).

  Only index arrays and labels are made: the Dataset shares `raw`'s input arrays.
  """
  _validate_fields(c)
  n_pool = len(raw.y_pool)
  n_val = round(c.validation_fraction * n_pool)
  if c.validation_fraction > 0 and not 1 <= n_val <= n_pool - 1:
    raise ConfigError(
        'data.validation_fraction', c.validation_fraction,
        f'must leave >= 1 training and >= 1 validation example of the {n_pool} in the '
        f'training pool (gives {n_val} validation examples)')
  available = n_pool - n_val
  if available < 1:
    raise ConfigError('data.name', c.name, 'has an empty training split')
  if c.train_size > available:
    raise ConfigError(
        'data.train_size', c.train_size,
        f'must be <= {available} (the training pool of {n_pool} minus {n_val} '
        'validation examples), or 0 for all')
  rng = np.random.default_rng(c.split_seed)
  perm = rng.permutation(n_pool)
  val_idx = perm[:n_val]
  train_idx = perm[n_val:]
  if c.train_size > 0:
    train_idx = train_idx[:c.train_size]
  y_train = raw.y_pool[train_idx].astype(np.int32)
  if c.label_noise > 0:
    y_train, _ = corrupt_labels(y_train, c.label_noise, raw.num_classes, rng)
  table = _DECODE_UINT8 if raw.x_pool.dtype == np.uint8 else None
  shift = scale = None
  if _standardize(c):
    # The training rows only: validation and test examples must not inform the inputs.
    shift, scale = feature_statistics(_decode_stored(raw.x_pool[train_idx], table))
  return Dataset(name=c.name, num_classes=int(raw.num_classes), pool=raw.x_pool,
                 pool_labels=raw.y_pool, train_idx=_read_only(train_idx.astype(np.int32)),
                 y_train=_read_only(y_train), val_idx=_read_only(val_idx.astype(np.int32)),
                 test=raw.x_test, y_test=raw.y_test, decode_table=table,
                 split_seed=int(c.split_seed), feature_shift=shift, feature_scale=scale)


# uint8 v -> float32(v) / float32(255): images in [0, 1], as float32 division gives them.
_DECODE_UINT8 = _read_only(np.arange(256, dtype=np.float32) / np.float32(255))


def _load_digits() -> _Raw:
  """scikit-learn's 8x8 digits, values 0..16 scaled to [0, 1]; fixed test split."""
  from sklearn import datasets, model_selection  # Lazy: sklearn import is slow.
  digits = datasets.load_digits()
  x = (digits.images / 16.0).astype(np.float32)[..., None]
  y = digits.target.astype(np.int32)
  pool_idx, test_idx = model_selection.train_test_split(
      np.arange(len(y)), test_size=_DIGITS_TEST_FRACTION, stratify=y,
      random_state=_DIGITS_TEST_SEED)
  # Sorted so that the pool order (input to the split permutation) is the file order.
  pool_idx, test_idx = np.sort(pool_idx), np.sort(test_idx)
  return _Raw(x[pool_idx], y[pool_idx], x[test_idx], y[test_idx], num_classes=10)


# ----------------------------------------------------------------------------- IDX
# Hand-written because the format is tiny (a big-endian header and raw bytes) and the
# libraries that read it (torchvision, TFDS's generator) need torch or TensorFlow.


def _load_idx_dir(folder: str) -> _Raw:
  """The four MNIST-style IDX files in `folder` -> uint8 (N, rows, cols, 1) and labels."""
  d = Path(folder)
  if not d.is_dir():
    raise ConfigError('data.dir', folder, 'is not a folder; it must hold the four MNIST '
                      'IDX files (train-images-idx3-ubyte.gz, ...)')
  arrays = {}
  for key, stem in _IDX_FILES.items():
    magic = _IDX_IMAGE_MAGIC if key.endswith('images') else _IDX_LABEL_MAGIC
    arrays[key] = _read_idx(_find_idx_file(d, stem, folder), magic, folder)
  for split in ('train', 'test'):
    images, labels = arrays[f'{split}_images'], arrays[f'{split}_labels']
    if len(images) != len(labels):
      raise ConfigError(
          'data.dir', folder,
          f"{_IDX_FILES[split + '_images']} holds {len(images)} images but "
          f"{_IDX_FILES[split + '_labels']} holds {len(labels)} labels")
    bad = np.flatnonzero(labels >= 10)
    if bad.size:
      raise ConfigError(
          'data.dir', folder,
          f"{_IDX_FILES[split + '_labels']}: label {labels[bad[0]]} at index {bad[0]} "
          'is outside [0, 10)')
  if arrays['train_images'].shape[1:] != arrays['test_images'].shape[1:]:
    raise ConfigError('data.dir', folder,
                      f"train images are {arrays['train_images'].shape[1:]} but test "
                      f"images are {arrays['test_images'].shape[1:]}")
  return _Raw(arrays['train_images'][..., None], arrays['train_labels'],
              arrays['test_images'][..., None], arrays['test_labels'], num_classes=10)


def _find_idx_file(d: Path, stem: str, folder: str) -> Path:
  """`stem.gz` if present, else the uncompressed `stem`."""
  for candidate in (d / f'{stem}.gz', d / stem):
    if candidate.is_file():
      return candidate
  raise ConfigError('data.dir', folder,
                    f'{d / stem}.gz not found (nor uncompressed {stem})')


def _read_idx(path: Path, magic: int, folder: str) -> np.ndarray:
  """One IDX file of unsigned bytes -> uint8 array of the header's shape."""
  def fail(problem: str) -> ConfigError:
    return ConfigError('data.dir', folder, f'{path}: {problem}')

  try:
    if path.suffix == '.gz':
      with gzip.open(path, 'rb') as f:
        data = f.read()
    else:
      data = path.read_bytes()
  except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError.
    raise fail(f'cannot be read ({type(e).__name__}: {e}); truncated or corrupt') from e
  if len(data) < 4:
    raise fail(f'has {len(data)} bytes, too short for an IDX header')
  found = int.from_bytes(data[:4], 'big')
  if found != magic:
    kind = 'image' if magic == _IDX_IMAGE_MAGIC else 'label'
    raise fail(f'magic number {found}, expected {magic} (an IDX {kind} file)')
  ndim = data[3]
  header = 4 + 4 * ndim
  if len(data) < header:
    raise fail(f'has {len(data)} bytes, too short for its {ndim}-dimension header')
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
  expected = header + int(np.prod(shape, dtype=np.int64))
  if len(data) != expected:
    raise fail(f'has {len(data)} bytes but its header {shape} needs {expected}; '
               'truncated or corrupt')
  if magic == _IDX_IMAGE_MAGIC and (shape[1] < 1 or shape[2] < 1):
    raise fail(f'image size {shape[1]}x{shape[2]} is empty')
  return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


# ----------------------------------------------------------------------------- TFDS


def _load_tfds(tfds_name: str, value: str, hint: str) -> _Raw:
  """Train and test splits of a TFDS image-classification dataset, via data sources.

  `tfds.data_source` (random-access ArrayRecord files) reads without TensorFlow, unlike
  `tfds.load`; preparing most datasets (e.g. MNIST) still needs TensorFlow, and any
  failure becomes a one-line ConfigError.
  """
  field = 'data.name'
  try:
    import tensorflow_datasets as tfds  # Lazy: slow to import, only this path needs it.
    train, test = tfds.data_source(tfds_name, split=['train', 'test'])
    features = train.dataset_info.features
  except Exception as e:  # pylint: disable=broad-except  # Offline, no TF, bad name...
    raise ConfigError(field, value,
                      f'TFDS could not load it ({_short_reason(e)}); {hint}') from e
  keys = set(features.keys())
  if not {'image', 'label'} <= keys:
    raise ConfigError(field, value, f'TFDS features are {sorted(keys)}; an image and a '
                      'label feature are needed')
  image_shape = tuple(features['image'].shape)
  num_classes = getattr(features['label'], 'num_classes', None)
  if None in image_shape or len(image_shape) != 3:
    raise ConfigError(field, value, f'TFDS image shape {image_shape} is not a fixed '
                      '(H, W, C)')
  if not num_classes:
    raise ConfigError(field, value, 'TFDS label is not a ClassLabel with num_classes')
  x_pool, y_pool = _read_source(train, field, value)
  x_test, y_test = _read_source(test, field, value)
  for x in (x_pool, x_test):
    if x.dtype != np.uint8:
      raise ConfigError(field, value, f'TFDS images are {x.dtype}, expected uint8')
  for y in (y_pool, y_test):
    if y.size and not 0 <= y.min() <= y.max() < num_classes:
      raise ConfigError(field, value, f'TFDS labels span [{y.min()}, {y.max()}], '
                        f'outside [0, {num_classes})')
  return _Raw(x_pool, y_pool, x_test, y_test, num_classes=int(num_classes))


def _read_source(source: Any, field: str, value: str) -> tuple[np.ndarray, np.ndarray]:
  """A TFDS data source -> stacked images (N, H, W, C) and int32 labels (N,)."""
  try:
    # One example at a time: `__getitems__` is broken under tfds.testing.mock_data.
    examples = [source[i] for i in range(len(source))]
    x = np.stack([np.asarray(ex['image']) for ex in examples])
    y = np.array([ex['label'] for ex in examples], dtype=np.int32)
  except Exception as e:  # pylint: disable=broad-except  # Decoding needs TF extras...
    raise ConfigError(field, value,
                      f'TFDS could not read it ({_short_reason(e)})') from e
  return x, y


def _short_reason(e: BaseException) -> str:
  """First line of an exception, at most 160 characters."""
  lines = str(e).strip().splitlines()
  text = f"{type(e).__name__}: {lines[0] if lines else ''}"
  return text if len(text) <= 160 else text[:157] + '...'


# ----------------------------------------------------------------------------- npz


def _load_npz(path: str, value: str) -> _Raw:
  """x_train, y_train, x_test, y_test from a .npz, checked (README: "MNIST and other data").

  x: shape (N, D) (a feature table), (N, H, W) or (N, H, W, C). uint8 is returned as is
  and scaled to [0, 1] by 1/255 later (images); any other integer or float dtype is
  returned as float32 with its values unchanged (any finite range). (N, H, W) gets a
  channel axis; (N, D) keeps its shape, so an MLP sees exactly D inputs. y: integer
  labels >= 0, shape (N,); num_classes = max label + 1 over both splits.
  """
  def fail(problem: str) -> ConfigError:
    return ConfigError('data.name', value, problem)

  try:
    with np.load(path, allow_pickle=False) as f:  # No pickles: a .npz may be untrusted.
      missing = [k for k in ('x_train', 'y_train', 'x_test', 'y_test') if k not in f]
      if missing:
        raise fail(f"{path} lacks {', '.join(missing)} (has {', '.join(f.files)}); it "
                   'needs x_train, y_train, x_test, y_test')
      arrays = {k: f[k] for k in ('x_train', 'y_train', 'x_test', 'y_test')}
  except ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # Missing, not a zip, pickled.
    raise fail(f'cannot read {path} as .npz ({_short_reason(e)})') from e
  xs = {}
  for split in ('train', 'test'):
    x, y = arrays[f'x_{split}'], arrays[f'y_{split}']
    if x.ndim not in (2, 3, 4) or min(x.shape[1:], default=0) < 1:
      raise fail(f'x_{split} has shape {x.shape}; expected (N, D) features, (N, H, W) or '
                 '(N, H, W, C) images, each dimension after N >= 1')
    # bool is not np.integer; complex, strings and datetimes are not numbers to train on.
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
      raise fail(f'x_{split} is {x.dtype}; expected uint8 images (0..255) or integer or '
                 'float features')
    if x.dtype != np.uint8:
      # Converted here, not by the caller, so that float64 values beyond float32's range
      # (which would become inf) are reported instead of trained on.
      with np.errstate(over='ignore'):  # Overflow becomes inf, reported just below.
        x32 = x.astype(np.float32, copy=False)
      if not np.all(np.isfinite(x32)):
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
          raise fail(f'x_{split} has NaN or infinite values')
        raise fail(f"x_{split} has values beyond float32's range (|x| > "
                   f'{np.finfo(np.float32).max:g})')
      x = x32
    if x.ndim == 3:
      x = x[..., None]
    if y.ndim != 1 or len(y) != len(x):
      raise fail(f'y_{split} has shape {y.shape}; expected ({len(x)},) to match x_{split}')
    if not np.issubdtype(y.dtype, np.integer):
      raise fail(f'y_{split} is {y.dtype}; expected integer class labels')
    if len(y) == 0:
      raise fail(f'x_{split} and y_{split} are empty')
    if y.min() < 0:
      raise fail(f'y_{split} has a negative label ({y.min()}); labels must be >= 0')
    xs[split] = x
  # uint8 is scaled by 1/255 and everything else is not, so mixing them would give the
  # two splits different scales.
  if (arrays['x_train'].dtype == np.uint8) != (arrays['x_test'].dtype == np.uint8):
    raise fail(f"x_train is {arrays['x_train'].dtype} but x_test is "
               f"{arrays['x_test'].dtype}; both must be uint8 (images scaled to [0, 1]) "
               'or both not (values kept)')
  if xs['train'].shape[1:] != xs['test'].shape[1:]:
    raise fail(f"x_train examples are {xs['train'].shape[1:]} but x_test examples are "
               f"{xs['test'].shape[1:]}")
  num_classes = int(max(arrays['y_train'].max(), arrays['y_test'].max())) + 1
  return _Raw(xs['train'], arrays['y_train'], xs['test'], arrays['y_test'], num_classes)
