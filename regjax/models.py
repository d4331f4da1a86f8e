"""Flax Linen models: an MLP and a small CNN, with keyed dropout and optional BatchNorm.

Both are pure functions of their variables:

  logits, updates = model.apply({'params': p, 'batch_stats': bs}, x, train=True,
                                rngs={'dropout': key}, mutable=['batch_stats'])
  logits = model.apply({'params': p, 'batch_stats': bs}, x, train=False)

Dropout draws its mask from the `dropout` RNG collection, so the caller passes the key
every step (regjax passes `jax.random.fold_in(dropout_key, step)`). BatchNorm keeps its
running statistics in the `batch_stats` collection: in training the batch's statistics
normalize and the running averages are updated (only through `mutable=['batch_stats']`);
at inference the running averages normalize.
"""

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
from jax.extend import random as jax_random_ext
import jax.numpy as jnp
import ml_collections

from regjax.errors import ConfigError

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'gelu': nn.gelu,
    'tanh': jnp.tanh,
    'elu': nn.elu,
    'swish': nn.swish,
}
DROPOUT_MODES = ('inverted', 'classic')


# Where dropout masks get their random bits (recorded beside a run's results): unit i of a
# mask is field i of the threefry2x32 hash words of the step key, each unit taking the
# fewest bits b in MASK_FIELD_BITS that express the rate exactly (16 if none does).
# The keep probability is exact for rates that are multiples of 2**-16 (see
# keep_probability). Until this constant existed the masks were nn.Dropout's
# jax.random.bernoulli (one threefry hash per unit): a seed's dropout runs then differed.
DROPOUT_BITS = 'threefry2x32 hash words of the key, b-bit threshold per unit, b=1..16'
MASK_FIELD_BITS = (1, 2, 4, 8, 16)


def mask_field_bits(rate: float) -> int:
  """Bits per unit of the mask: the fewest b with rate * 2**b whole, else 16.

  Rate 0.5 takes 1 bit, 0.25 or 0.75 take 2, 0.1 takes 16 (rounded: see keep_probability).
  """
  for bits in MASK_FIELD_BITS:
    if rate * 2**bits == round(rate * 2**bits):
      return bits
  return MASK_FIELD_BITS[-1]


def _drop_threshold(rate: float) -> tuple[int, int]:
  """(bits b, threshold t): a unit whose b-bit field is >= t is kept."""
  bits = mask_field_bits(rate)
  # At most 2**b - 1 so that a rate just below 1 still keeps some units.
  return bits, min(round(rate * 2**bits), 2**bits - 1)


def keep_probability(rate: float) -> float:
  """The probability a unit is kept: exactly 1 - rate if rate is a multiple of 2**-16
  (0.5, 0.25, ...), else 1 - rate rounded to the nearest multiple of 2**-16 (off by at
  most 2**-17: rate 0.1 keeps 0.89999390)."""
  bits, threshold = _drop_threshold(rate)
  return 1.0 - threshold / 2**bits


def _threefry_pair(key: jax.Array) -> jax.Array:
  """uint32[2] key material of a typed or raw key of any implementation."""
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  words = key.reshape(-1, 2)
  if words.shape[0] == 1:
    return words[0]  # A threefry key (JAX's default) is used as it is.
  # A 4-word (rbg) key: hash its second pair with its first. (Not XOR: an rbg key made
  # from a seed has two equal halves.)
  return jax_random_ext.threefry_2x32(words[0], words[1:].reshape(-1))[-2:]


def keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jax.Array:
  """bool[shape]: True where a unit is kept, independently with keep_probability(rate).

  Why not jax.random.bernoulli (what nn.Dropout calls): it spends one threefry hash
  (20 rounds) per unit and uses 23 of its 64 bits. Here each hash yields 64 bits and a
  unit takes only b of them (mask_field_bits), so rate 0.5 needs one hash per 64 units.
  On a 2-core CPU that made the dropout-0.5 MNIST epoch (batch 32) 1.25-1.31x the
  no-dropout epoch; now it is 1.00-1.01x, and 1.07-1.10x at rates that take 16 bits
  (0.1, 0.8) (experiments/dropout_cost.py). The hash is counter-based, so under
  jax.vmap each key still gets exactly its own mask, the same bits on every backend and
  independent of jax_threefry_partitionable (XLA's RngBitGenerator, the 'rbg' keys, was
  no cheaper on a CPU and under vmap draws every member's bits from the first key).
  """
  bits, threshold = _drop_threshold(rate)
  per_word = 32 // bits
  size = math.prod(shape)
  num_words = -(-size // per_word)
  num_words += num_words % 2  # The hash makes words in pairs.
  words = jax_random_ext.threefry_2x32(_threefry_pair(key),
                                       jax.lax.iota(jnp.uint32, num_words))
  shifts = jnp.arange(0, 32, bits, dtype=jnp.uint32)
  fields = (words[:, None] >> shifts) & jnp.uint32(2**bits - 1)
  return (fields.reshape(-1)[:size] >= jnp.uint32(threshold)).reshape(shape)


class Dropout(nn.Module):
  """Dropout in two scalings with the same expected activation.

  `inverted` (the default, as in `nn.Dropout`): keep each unit with probability q and
  scale kept units by 1/q in training; identity at inference. `classic` (Srivastava et
  al. 2014, and the classic notebook's description): no scaling in training; multiply by
  q at inference. q = keep_probability(rate): 1 - rate, exactly for rates that are
  multiples of 2**-16 (see `keep_mask` for where the mask's random bits come from).

  A Linen module, but the mask is not nn.Dropout's: see `keep_mask` for why.

  Attributes:
    rate: drop probability p in [0, 1).
    mode: 'inverted' or 'classic'.
  """
  rate: float
  mode: str = 'inverted'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """x: any shape; returns the same shape. Training draws from the 'dropout' RNG."""
    if self.rate == 0.0:
      return x  # No mask, and no random numbers drawn.
    # The realized keep probability, so the expected activation is exact at any rate.
    keep_prob = keep_probability(self.rate)
    if not train:
      return x * keep_prob if self.mode == 'classic' else x
    keep = keep_mask(self.make_rng('dropout'), x.shape, self.rate)
    scale = 1.0 / keep_prob if self.mode == 'inverted' else 1.0
    return jnp.where(keep, x * scale, jnp.zeros_like(x))


def _kernel_init(scale: float) -> nn.initializers.Initializer:
  """Lecun-normal init (Flax's default for Dense and Conv) multiplied by `scale`."""
  return nn.initializers.variance_scaling(scale**2, 'fan_in', 'truncated_normal')


class _Hidden(nn.Module):
  """Shared post-linear block: optional BatchNorm, activation, dropout."""
  activation: str
  dropout_rate: float
  dropout_mode: str
  batch_norm: bool
  bn_momentum: float
  bn_epsilon: float

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                       epsilon=self.bn_epsilon)(x)
    x = ACTIVATIONS[self.activation](x)
    return Dropout(self.dropout_rate, self.dropout_mode)(x, train)


class _Classifier(nn.Module):
  """The options MLP and CNN share (see `make_model` and regjax/schema.py)."""
  widths: Sequence[int] = (128,)
  num_classes: int = 10
  activation: str = 'relu'
  dropout_rate: float = 0.0
  dropout_mode: str = 'inverted'
  input_dropout_rate: float = 0.0
  batch_norm: bool = False
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  kernel_init_scale: float = 1.0

  def _hidden(self, x: jax.Array, train: bool, dropout_rate: float) -> jax.Array:
    return _Hidden(self.activation, dropout_rate, self.dropout_mode, self.batch_norm,
                   self.bn_momentum, self.bn_epsilon)(x, train)


class MLP(_Classifier):
  """Flatten -> [Dense -> (BatchNorm) -> activation -> Dropout] per width -> Dense logits.

  The defaults reproduce the classic notebook model: Dense 128 relu, Dropout, Dense 10.
  Inputs (B, ...) are flattened to (B, D); outputs are logits (B, num_classes): the
  softmax lives in the loss.
  """
  dropout_rate: float = 0.5  # The notebook's rate; make_model passes the config's.

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: (B, ...) float32 -> logits (B, num_classes)."""
    x = x.reshape((x.shape[0], -1))
    x = Dropout(self.input_dropout_rate, self.dropout_mode)(x, train)
    init = _kernel_init(self.kernel_init_scale)
    for width in self.widths:
      # A bias before BatchNorm is redundant: BatchNorm's own bias replaces it.
      x = nn.Dense(width, use_bias=not self.batch_norm, kernel_init=init)(x)
      x = self._hidden(x, train, self.dropout_rate)
    return nn.Dense(self.num_classes, kernel_init=init)(x)


class CNN(_Classifier):
  """Conv 3x3 -> Conv 3x3 -> max-pool 2x2 -> [Dense -> Dropout] per width -> Dense logits.

  Each conv is followed by (BatchNorm) and the activation; dropout follows the pooling
  and each hidden Dense. Inputs (B, H, W, C) images; outputs logits (B, num_classes).
  """
  conv_features: Sequence[int] = (32, 64)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: (B, H, W, C) float32 -> logits (B, num_classes)."""
    init = _kernel_init(self.kernel_init_scale)
    x = Dropout(self.input_dropout_rate, self.dropout_mode)(x, train)
    for features in self.conv_features:
      x = nn.Conv(features, (3, 3), use_bias=not self.batch_norm, kernel_init=init)(x)
      x = self._hidden(x, train, 0.0)
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = Dropout(self.dropout_rate, self.dropout_mode)(x, train)
    for width in self.widths:
      x = nn.Dense(width, use_bias=not self.batch_norm, kernel_init=init)(x)
      x = self._hidden(x, train, self.dropout_rate)
    return nn.Dense(self.num_classes, kernel_init=init)(x)


def _check_rate(field: str, value) -> float:
  if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
    raise ConfigError(field, value, 'a drop probability must be in [0, 1)')
  return float(value)


def make_model(model_config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """Builds the model named by `config.model`, validating every field.

  Args:
    model_config: `config.model` (see regjax/schema.py).
    num_classes: number of output logits.
  Returns:
    An `MLP` or `CNN` Linen module (unbound).
  """
  c = model_config
  names = {'mlp': MLP, 'cnn': CNN}
  if c.name not in names:
    raise ConfigError('model.name', c.name, f'allowed: {", ".join(names)}')
  if c.activation not in ACTIVATIONS:
    raise ConfigError('model.activation', c.activation, f'allowed: {", ".join(ACTIVATIONS)}')
  if c.dropout_mode not in DROPOUT_MODES:
    raise ConfigError('model.dropout_mode', c.dropout_mode,
                      f'allowed: {", ".join(DROPOUT_MODES)}')
  widths = tuple(c.widths)
  if not all(isinstance(w, int) and w > 0 for w in widths):
    raise ConfigError('model.widths', c.widths, 'a tuple of positive integers')
  if not 0.0 <= c.bn_momentum < 1.0:
    raise ConfigError('model.bn_momentum', c.bn_momentum, 'must be in [0, 1)')
  if not c.bn_epsilon > 0.0:
    raise ConfigError('model.bn_epsilon', c.bn_epsilon, 'must be > 0')
  if not c.kernel_init_scale > 0.0:
    raise ConfigError('model.kernel_init_scale', c.kernel_init_scale, 'must be > 0')
  kwargs = dict(
      widths=widths, num_classes=num_classes, activation=c.activation,
      dropout_rate=_check_rate('model.dropout_rate', c.dropout_rate),
      input_dropout_rate=_check_rate('model.input_dropout_rate', c.input_dropout_rate),
      dropout_mode=c.dropout_mode, batch_norm=bool(c.batch_norm),
      bn_momentum=float(c.bn_momentum), bn_epsilon=float(c.bn_epsilon),
      kernel_init_scale=float(c.kernel_init_scale))
  if c.name == 'cnn':
    features = tuple(c.conv_features)
    if not features or not all(isinstance(f, int) and f > 0 for f in features):
      raise ConfigError('model.conv_features', c.conv_features,
                        'a non-empty tuple of positive integers')
    kwargs['conv_features'] = features
  return names[c.name](**kwargs)
