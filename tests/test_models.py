"""Models: keyed dropout in both scalings, BatchNorm statistics, shapes and validation."""

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats

from experiments import dropout_cost
from regjax import data
from regjax import models
from regjax import schema
from regjax.errors import ConfigError


class DropoutTest(parameterized.TestCase):

  @parameterized.parameters('inverted', 'classic')
  def test_expected_training_activation_matches_inference(self, mode):
    # Over many keys the mean training output must equal the (deterministic) inference
    # output: E[mask * x * s_train] = (1-p) * s_train * x = s_infer * x in both modes.
    p, n_keys = 0.5, 4000
    layer = models.Dropout(rate=p, mode=mode)
    x = jnp.linspace(0.5, 2.0, 16)
    keys = jax.random.split(jax.random.key(0), n_keys)
    train_out = jax.vmap(lambda k: layer.apply({}, x, train=True, rngs={'dropout': k}))(keys)
    infer_out = layer.apply({}, x, train=False)
    # Per unit the mean of n_keys Bernoulli draws has sd x*s*sqrt(p(1-p)/n) <= 2*0.5/63;
    # 5 sd over 16 units keeps false failures below 1e-5.
    scale_train = 1.0 / (1 - p) if mode == 'inverted' else 1.0
    sd = x * scale_train * np.sqrt(p * (1 - p) / n_keys)
    np.testing.assert_array_less(np.abs(train_out.mean(0) - infer_out), 5 * sd)
    expected_infer = x if mode == 'inverted' else x * (1 - p)
    chex.assert_trees_all_close(infer_out, expected_infer, rtol=1e-6)

  @parameterized.parameters('inverted', 'classic')
  def test_training_scaling_of_kept_units(self, mode):
    p = 0.25
    x = jnp.ones((1000,))
    out = models.Dropout(rate=p, mode=mode).apply({}, x, train=True,
                                                  rngs={'dropout': jax.random.key(1)})
    kept = np.unique(np.asarray(out[out != 0]))
    expected = 1 / (1 - p) if mode == 'inverted' else 1.0
    np.testing.assert_allclose(kept, [expected], rtol=1e-6)
    # About (1-p) of the units survive: 750 +- 5 sd (sd = sqrt(1000*p*(1-p)) ~ 13.7).
    self.assertLess(abs(int((out != 0).sum()) - 750), 70)

  def test_inference_is_deterministic_and_needs_no_key(self):
    model = models.MLP(widths=(32,), dropout_rate=0.5)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    variables = model.init(jax.random.key(1), x)
    a = model.apply(variables, x, train=False)
    b = model.apply(variables, x, train=False)
    chex.assert_trees_all_equal(a, b)

  def test_same_key_same_mask_and_different_key_different_mask(self):
    model = models.MLP(widths=(64,), dropout_rate=0.5)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    variables = model.init(jax.random.key(1), x)
    run = lambda k: model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(k)})
    chex.assert_trees_all_equal(run(3), run(3))
    self.assertGreater(float(jnp.abs(run(3) - run(4)).max()), 1e-3)

  def test_training_without_dropout_key_fails_loudly(self):
    model = models.MLP(widths=(8,), dropout_rate=0.5)
    x = jnp.ones((2, 4))
    variables = model.init(jax.random.key(0), x)
    with self.assertRaises(Exception):
      model.apply(variables, x, train=True)


# Bound for the chi-square tests below: a false failure has probability 1e-6 per test.
_P_FAIL = 1e-6


def _step_masks(rate: float, steps: int = 200, units: int = 4096) -> np.ndarray:
  """bool[steps, units]: the masks of `steps` training steps, drawn as training draws
  them (the Dropout module, key fold_in(key, step), vmapped over the steps)."""
  layer = models.Dropout(rate=rate)
  key = jax.random.key(7)
  ones = jnp.ones((units,))
  out = jax.jit(jax.vmap(lambda t: layer.apply(
      {}, ones, train=True, rngs={'dropout': jax.random.fold_in(key, t)})))(
          jnp.arange(steps))
  return np.asarray(out) != 0


def _independence_chi2(a: np.ndarray, b: np.ndarray) -> float:
  """Chi-square statistic (1 df) of the 2x2 contingency table of bool arrays a, b."""
  table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
  return stats.chi2_contingency(table, correction=False)[0]


class MaskTest(parameterized.TestCase):
  """The mask's keep-rate, independence, reproducibility and vmap behaviour."""

  @parameterized.parameters(
      (0.5, 1, 0.5), (0.25, 2, 0.75), (0.125, 4, 0.875), (1 / 256, 8, 255 / 256),
      (0.8, 16, 1 - 52429 / 65536), (0.1, 16, 1 - 6554 / 65536),
      (0.99999999, 16, 1 / 65536))
  def test_field_bits_and_keep_probability(self, rate, bits, keep):
    self.assertEqual(models.mask_field_bits(rate), bits)
    self.assertEqual(models.keep_probability(rate), keep)
    # The resolution the docstring promises (except the clamp that keeps 1 unit in 65536).
    if rate < 1 - 2**-16:
      self.assertLessEqual(abs(models.keep_probability(rate) - (1 - rate)), 2**-17)

  @parameterized.parameters(0.1, 0.5, 0.8)
  def test_keep_rate_overall_and_per_unit(self, rate):
    masks = _step_masks(rate)
    n = masks.size
    q = models.keep_probability(rate)
    # Overall: kept ~ Binomial(n, q); 5 sd is a false failure of < 1e-6. With n = 819,200
    # that bound is ~0.003 in the fraction: a wrong threshold or field width fails it.
    sd = np.sqrt(n * q * (1 - q))
    self.assertLess(abs(masks.sum() - n * q), 5 * sd)
    # Per unit (4096 units, 200 steps each): goodness of fit of the per-unit kept counts.
    # A unit position the bit packing gets wrong (a field that is constant, or shared)
    # would alone push this far past the bound.
    steps = masks.shape[0]
    counts = masks.sum(0)
    chi2 = np.sum((counts - steps * q)**2 / (steps * q * (1 - q)))
    self.assertLess(chi2, stats.chi2.isf(_P_FAIL, df=masks.shape[1]))

  @parameterized.parameters(0.1, 0.5, 0.8)
  def test_masks_independent_across_steps_and_units(self, rate):
    masks = _step_masks(rate)
    bound = stats.chi2.isf(_P_FAIL, df=1)  # ~23.9; n = 819,200 detects |corr| > ~0.005.
    half = masks.shape[1] // 2
    pairs = {
        'unit i at steps t, t+1': (masks[:-1], masks[1:]),
        'units j, j+1 (same hash word)': (masks[:, :-1], masks[:, 1:]),
        # The two words of one threefry hash land half the mask apart.
        'units j, j+half (same hash)': (masks[:, :half], masks[:, half:]),
    }
    for name, (a, b) in pairs.items():
      with self.subTest(name):
        self.assertLess(_independence_chi2(a, b), bound)
    # No two steps share a mask (4096 units: a repeat by chance is impossible).
    self.assertLen({m.tobytes() for m in masks}, masks.shape[0])

  @parameterized.parameters(0.5, 0.3)
  def test_vmapped_keys_give_each_keys_own_mask(self, rate):
    # A sweep vmaps whole runs: member i's masks must be those of its separate run
    # (XLA's RngBitGenerator, the 'rbg' keys, fails this: all members get key 0's bits).
    keys = jax.random.split(jax.random.key(3), 6)
    one = jax.jit(lambda k: models.keep_mask(k, (5, 37), rate))
    separate = np.stack([one(k) for k in keys])
    np.testing.assert_array_equal(jax.jit(jax.vmap(one))(keys), separate)
    # Nested (members x steps), as a vmapped sweep's scan over steps sees it; and eager.
    nested = jax.vmap(jax.vmap(lambda k, t: one(jax.random.fold_in(k, t)), (None, 0)),
                      (0, None))(keys, jnp.arange(3))
    np.testing.assert_array_equal(nested[4, 2], one(jax.random.fold_in(keys[4], 2)))
    np.testing.assert_array_equal(nested[1, 0], models.keep_mask(
        jax.random.fold_in(keys[1], 0), (5, 37), rate))

  def test_vmapped_model_gives_each_keys_own_output(self):
    model = models.MLP(widths=(32,), dropout_rate=0.5, input_dropout_rate=0.2)
    x = jax.random.normal(jax.random.key(0), (4, 20))
    variables = model.init(jax.random.key(1), x)
    run = jax.jit(lambda k: model.apply(variables, x, train=True, rngs={'dropout': k}))
    keys = jax.random.split(jax.random.key(2), 4)
    chex.assert_trees_all_equal(jax.vmap(run)(keys), jnp.stack([run(k) for k in keys]))

  def test_same_key_same_mask_under_jit_and_pinned_bits(self):
    key = jax.random.fold_in(jax.random.key(0), 5)
    eager = models.keep_mask(key, (64,), 0.5)
    jitted = jax.jit(models.keep_mask, static_argnums=(1, 2))(key, (64,), 0.5)
    np.testing.assert_array_equal(eager, jitted)
    # What a seed gives: these bits change only with the mask's definition, and then
    # models.DROPOUT_BITS (recorded in results) must change with them.
    packed = int(np.packbits(np.asarray(eager)).view('>u8')[0])
    self.assertEqual(packed, _PINNED_MASK)

  def test_keys_of_other_implementations_and_raw_keys(self):
    # An rbg key made from a seed has two equal halves: the seeds must still differ.
    rbg = [models.keep_mask(jax.random.key(s, impl='rbg'), (256,), 0.5) for s in (0, 1)]
    self.assertGreater(int(np.sum(rbg[0] != rbg[1])), 64)
    # A raw uint32[2] key (jax.random.PRNGKey) gives the typed key's mask.
    np.testing.assert_array_equal(models.keep_mask(jax.random.PRNGKey(4), (256,), 0.5),
                                  models.keep_mask(jax.random.key(4), (256,), 0.5))

  def test_rate_zero_draws_no_random_numbers(self):
    # Training at rate 0 needs no 'dropout' key: the layer is the identity.
    x = jnp.arange(6.0)
    out = models.Dropout(rate=0.0).apply({}, x, train=True)
    np.testing.assert_array_equal(out, x)

  @parameterized.parameters('inverted', 'classic')
  def test_scaling_uses_the_realized_keep_probability(self, mode):
    # rate 0.1 keeps 1 - 6554/65536: the 1/q (inverted) and q (classic) factors are that q.
    q = models.keep_probability(0.1)
    x = jnp.ones((512,))
    layer = models.Dropout(rate=0.1, mode=mode)
    out = layer.apply({}, x, train=True, rngs={'dropout': jax.random.key(0)})
    np.testing.assert_allclose(np.unique(np.asarray(out[out != 0])),
                               [1 / q if mode == 'inverted' else 1.0], rtol=1e-7)
    np.testing.assert_allclose(layer.apply({}, x, train=False),
                               np.full(512, 1.0 if mode == 'inverted' else q), rtol=1e-7)


_PINNED_MASK = 0x4d110653e704ee56  # Units 0..63 as bits, unit 0 the highest.


class DropoutCostTest(absltest.TestCase):

  def test_smoke_on_digits(self):
    config = schema.default_config()
    result = dropout_cost.dropout_cost(data.load_dataset(config.data), repeats=1,
                                       batch_size=64)
    self.assertEqual(result['mask_bits'], models.DROPOUT_BITS)
    self.assertEqual(result['steps'], len(data.load_dataset(config.data).x_train) // 64)
    self.assertLen(result['ratios'], 1)
    self.assertGreater(result['dropout_seconds'], 0)
    self.assertAlmostEqual(result['ratio'],
                           result['dropout_seconds'] / result['no_dropout_seconds'])


class BatchNormTest(absltest.TestCase):

  def test_running_stats_follow_closed_form_moving_average(self):
    momentum, k = 0.8, 5
    model = models.MLP(widths=(6,), dropout_rate=0.0, batch_norm=True, bn_momentum=momentum)
    xs = jax.random.normal(jax.random.key(0), (k, 16, 3)) * 2.0 + 1.0
    variables = model.init(jax.random.key(1), xs[0])
    params, stats = variables['params'], variables['batch_stats']
    kernel = np.asarray(params['Dense_0']['kernel'])
    expected_mean, expected_var = np.zeros(6), np.ones(6)
    for t in range(k):
      _, updates = model.apply({'params': params, 'batch_stats': stats}, xs[t], train=True,
                               mutable=['batch_stats'])
      stats = updates['batch_stats']
      h = np.asarray(xs[t]) @ kernel  # The Dense before BatchNorm has no bias.
      expected_mean = momentum * expected_mean + (1 - momentum) * h.mean(0)
      expected_var = momentum * expected_var + (1 - momentum) * h.var(0)  # biased, as Flax
    bn = stats['_Hidden_0']['BatchNorm_0']
    np.testing.assert_allclose(bn['mean'], expected_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn['var'], expected_var, rtol=1e-4, atol=1e-5)

  def test_inference_uses_running_stats_not_the_batch(self):
    model = models.MLP(widths=(4,), dropout_rate=0.0, batch_norm=True)
    x = jax.random.normal(jax.random.key(0), (8, 3))
    variables = model.init(jax.random.key(1), x)
    # Replace the running statistics with recognisable values.
    stats = jax.tree.map(lambda a: a, variables['batch_stats'])
    bn = stats['_Hidden_0']['BatchNorm_0']
    bn['mean'] = jnp.full((4,), 3.0)
    bn['var'] = jnp.full((4,), 4.0)
    v = {'params': variables['params'], 'batch_stats': stats}
    # Inference output of one example must not depend on the rest of the batch.
    one = model.apply(v, x[:1], train=False)
    many = model.apply(v, x, train=False)[:1]
    chex.assert_trees_all_close(one, many, rtol=1e-6)
    # And must equal the hand computation with the running statistics.
    p = variables['params']
    h = x[:1] @ p['Dense_0']['kernel']
    bnp = p['_Hidden_0']['BatchNorm_0']
    h = (h - 3.0) / jnp.sqrt(4.0 + 1e-5) * bnp['scale'] + bnp['bias']
    expected = jax.nn.relu(h) @ p['Dense_1']['kernel'] + p['Dense_1']['bias']
    chex.assert_trees_all_close(one, expected, rtol=1e-5)
    # Training mode normalizes with the batch's own statistics instead.
    train_out, _ = model.apply(v, x, train=True, mutable=['batch_stats'])
    self.assertGreater(float(jnp.abs(train_out[:1] - one).max()), 1e-3)


class ModelShapeTest(parameterized.TestCase):

  def test_default_mlp_is_the_notebook_model(self):
    model = models.MLP()
    variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    shapes = jax.tree.map(jnp.shape, variables['params'])
    self.assertEqual(shapes, {'Dense_0': {'kernel': (784, 128), 'bias': (128,)},
                              'Dense_1': {'kernel': (128, 10), 'bias': (10,)}})
    self.assertEqual(model.dropout_rate, 0.5)
    self.assertEqual(model.activation, 'relu')

  @parameterized.parameters(('mlp', False), ('mlp', True), ('cnn', False), ('cnn', True))
  def test_make_model_shapes_and_finite(self, name, bn):
    config = schema.default_config().model
    config.name, config.batch_norm, config.dropout_rate = name, bn, 0.3
    model = models.make_model(config, num_classes=7)
    x = jax.random.uniform(jax.random.key(0), (5, 8, 8, 1))
    variables = model.init(jax.random.key(1), x)
    logits, _ = model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(2)},
                            mutable=['batch_stats'])
    chex.assert_shape(logits, (5, 7))
    chex.assert_tree_all_finite(logits)
    self.assertEqual('batch_stats' in variables, bn)

  def test_kernel_init_scale_scales_initial_weights(self):
    config = schema.default_config().model
    x = jnp.zeros((1, 64))
    norms = []
    for scale in (1.0, 3.0):
      config.kernel_init_scale = scale
      p = models.make_model(config, 10).init(jax.random.key(0), x)['params']
      norms.append(float(optax.tree.norm(p['Dense_0']['kernel'])))
    self.assertAlmostEqual(norms[1] / norms[0], 3.0, places=4)

  @parameterized.parameters(
      ('dropout_rate', 1.0, 'model.dropout_rate=1.0'),
      ('dropout_rate', -0.1, 'model.dropout_rate=-0.1'),
      ('input_dropout_rate', 1.5, 'model.input_dropout_rate=1.5'),
      ('name', 'resnet', "model.name='resnet'"),
      ('activation', 'sigmoidal', "model.activation='sigmoidal'"),
      ('dropout_mode', 'gaussian', "model.dropout_mode='gaussian'"),
      ('widths', (128, 0), 'model.widths=(128, 0)'),
      ('bn_momentum', 1.0, 'model.bn_momentum=1.0'),
  )
  def test_bad_values_name_field_and_value(self, field, value, expected):
    config = schema.default_config().model
    config[field] = value
    with self.assertRaises(ConfigError) as ctx:
      models.make_model(config, 10)
    self.assertIn(expected, str(ctx.exception))
    self.assertNotIn('\n', str(ctx.exception))


if __name__ == '__main__':
  absltest.main()
