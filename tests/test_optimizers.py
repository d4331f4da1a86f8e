"""Tests for regjax.optimizers: chain order, Lasso via ISTA, decoupled decay, sweeps."""

import math

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.linear_model import Lasso

from regjax import masks
from regjax import optimizers
from regjax import regularizers
from regjax import schema
from regjax.errors import ConfigError


def _config(**overrides):
  c = schema.default_config().optimizer
  for key, value in overrides.items():
    c[key] = value
  return c


def _params(seed=0):
  rng = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
  return {'Dense_0': {'kernel': f(6, 5), 'bias': f(5)},
          'BatchNorm_0': {'scale': f(5), 'bias': f(5)},
          'Conv_0': {'kernel': f(3, 3, 2, 4), 'bias': f(4)}}


def _train(tx, params, grads_fn, steps, hyperparams=None):
  """Runs `steps` optimizer steps under one jit (lax.scan); returns the params."""

  def body(carry, _):
    p, s = carry
    u, s = tx.update(grads_fn(p), s, p)
    return (optax.apply_updates(p, u), s), None

  def run(p, hyperparams):
    s = tx.init(p)
    if hyperparams:
      s = optimizers.set_hyperparams(s, **hyperparams)
    return jax.lax.scan(body, (p, s), None, length=steps)[0][0]

  return jax.jit(run)(params, hyperparams)


def _zero_grads(p):
  return jax.tree.map(jnp.zeros_like, p)


def _lasso_problem():
  """n=200, d=20, 5 true nonzeros, noise 0.5, fixed seed; float32 data."""
  rng = np.random.default_rng(0)
  n, d = 200, 20
  x = rng.standard_normal((n, d)).astype(np.float32)
  w_true = np.zeros(d, np.float32)
  w_true[:5] = [2.0, -1.5, 1.0, -0.5, 0.8]
  y = (x @ w_true + 0.5 * rng.standard_normal(n)).astype(np.float32)
  return x, y


class LassoTest(absltest.TestCase):
  """ISTA (sgd + l1_prox) solves the Lasso; the L1 subgradient only approaches it."""

  ALPHA = 0.2  # 5 nonzero coefficients, all |w| > 0.2; zero-set KKT margin 0.7 alpha.

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    x, y = _lasso_problem()
    cls.reference = Lasso(alpha=cls.ALPHA, fit_intercept=False, tol=1e-12,
                          max_iter=100_000).fit(x.astype(np.float64),
                                                y.astype(np.float64)).coef_
    cls.lr = float(1.0 / np.linalg.eigvalsh(x.T.astype(np.float64) @ x / len(x)).max())
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    loss = lambda p: 0.5 * jnp.mean(jnp.square(yj - xj @ p['Dense_0']['kernel'][:, 0]))
    cls.grads_fn = staticmethod(jax.grad(loss))
    cls.init = {'Dense_0': {'kernel': jnp.zeros((x.shape[1], 1)), 'bias': jnp.zeros(1)}}

  def _fit(self, **overrides):
    cfg = _config(name='sgd', learning_rate=self.lr, **overrides)
    tx = optimizers.make_optimizer(cfg, total_steps=2000)
    p = _train(tx, self.init, self.grads_fn, 2000)
    return np.asarray(p['Dense_0']['kernel'][:, 0])

  def test_l1_prox_sgd_converges_to_sklearn_lasso_with_exact_zeros(self):
    w = self._fit(l1_prox=self.ALPHA)
    np.testing.assert_allclose(w, self.reference, atol=1e-4)
    np.testing.assert_array_equal(w == 0, self.reference == 0)
    self.assertEqual(int(np.sum(w == 0)), 15)

  def test_l1_subgradient_gets_close_but_leaves_no_exact_zeros(self):
    # The cosine decay lets the subgradient iterates settle (at a constant rate they
    # oscillate by ~lr * alpha); they still straddle 0 instead of landing on it.
    w = self._fit(l1_subgradient=self.ALPHA, schedule='cosine')
    np.testing.assert_allclose(w, self.reference, atol=5e-3)
    self.assertLess(np.abs(w[self.reference == 0]).max(), 1e-2)  # Small ...
    self.assertLessEqual(int(np.sum(w == 0)), 1)  # ... but (almost) never exactly 0.


class DecoupledDecayTest(parameterized.TestCase):

  @parameterized.parameters('sgd', 'momentum', 'adam', 'adamw')
  def test_zero_gradient_decay_multiplies_kernels_by_one_minus_lr_wd_per_step(self, name):
    lr, wd, k = 0.1, 0.5, 7
    params = _params()
    tx = optimizers.make_optimizer(_config(name=name, learning_rate=lr, weight_decay=wd),
                                   total_steps=k)
    got = _train(tx, params, _zero_grads, k)
    factor = (1 - lr * wd) ** k  # 0.95 ** 7 = 0.698.
    for module in ('Dense_0', 'Conv_0'):
      np.testing.assert_allclose(got[module]['kernel'], params[module]['kernel'] * factor,
                                 rtol=2e-6)
      chex.assert_trees_all_equal(got[module]['bias'], params[module]['bias'])
    chex.assert_trees_all_equal(got['BatchNorm_0'], params['BatchNorm_0'])

  def test_masked_out_leaves_untouched_by_decay_l1_prox_and_max_norm(self):
    params = _params()
    tx = optimizers.make_optimizer(
        _config(name='sgd', learning_rate=0.1, weight_decay=0.5, l1_prox=0.5,
                max_norm=0.5), total_steps=3)
    got = _train(tx, params, _zero_grads, 3)
    chex.assert_trees_all_equal(got['BatchNorm_0'], params['BatchNorm_0'])
    chex.assert_trees_all_equal(got['Dense_0']['bias'], params['Dense_0']['bias'])
    chex.assert_trees_all_equal(got['Conv_0']['bias'], params['Conv_0']['bias'])
    kernel = np.asarray(got['Dense_0']['kernel'])
    self.assertLessEqual(np.sqrt(np.square(kernel).sum(0)).max(), 0.5 + 1e-6)
    self.assertGreater(np.mean(kernel == 0), 0.1)  # The prox made exact zeros.

  def test_adamw_equals_optax_adamw(self):
    params = _params()
    grads_fn = lambda p: jax.tree.map(lambda w: jnp.sin(3.0 * w) + 0.1, p)
    cfg = dict(learning_rate=0.01, b1=0.8, b2=0.99, weight_decay=0.1)
    got = _train(optimizers.make_optimizer(_config(name='adamw', **cfg), 20), params,
                 grads_fn, 20)
    ref = optax.inject_hyperparams(optax.adamw, static_args='mask')(
        0.01, b1=0.8, b2=0.99, weight_decay=0.1, mask=masks.regex_mask_fn())
    chex.assert_trees_all_close(got, _train(ref, params, grads_fn, 20), rtol=1e-6,
                                atol=1e-7)


class ChainTest(parameterized.TestCase):

  @parameterized.parameters('sgd', 'momentum', 'adam')
  def test_zero_strength_transforms_match_the_plain_optimizer(self, name):
    params = _params()
    grads_fn = lambda p: jax.tree.map(lambda w: jnp.cos(2.0 * w), p)
    cfg = _config(name=name, learning_rate=0.05)
    everything = optimizers.make_optimizer(cfg, 10,
                                           include=regularizers.transform_names())
    plain = optimizers.make_optimizer(cfg, 10)
    self.assertLen(everything.init(params).hyperparams,
                   len(plain.init(params).hyperparams) + 5)
    got = _train(everything, params, grads_fn, 10)
    # Same chain minus the 0-strength transforms, which return their input bit-for-bit.
    chex.assert_trees_all_equal(got, _train(plain, params, grads_fn, 10))
    # optax's own optimizers, with hyperparameters held as float32 arrays like ours.
    reference = {'sgd': lambda: optax.inject_hyperparams(optax.sgd)(0.05),
                 'momentum': lambda: optax.inject_hyperparams(optax.sgd)(0.05, 0.9),
                 'adam': lambda: optax.inject_hyperparams(optax.adam)(0.05)}[name]()
    chex.assert_trees_all_close(got, _train(reference, params, grads_fn, 10), rtol=1e-6,
                                atol=1e-7)

  def test_cosine_schedule_scales_the_peak_rate(self):
    tx = optimizers.make_optimizer(_config(name='sgd', learning_rate=2.0,
                                           schedule='cosine'), total_steps=10)
    params = {'w': jnp.zeros(())}
    state = tx.init(params)
    steps = []
    for _ in range(11):
      u, state = jax.jit(tx.update)({'w': jnp.ones(())}, state, params)
      steps.append(-float(u['w']))
    expected = [2.0 * 0.5 * (1 + math.cos(math.pi * min(t, 10) / 10)) for t in range(11)]
    np.testing.assert_allclose(steps, expected, atol=1e-6)
    self.assertEqual(float(state.hyperparams['learning_rate']), 2.0)  # The peak stays.

  def test_grad_clip_bounds_the_first_sgd_step(self):
    tx = optimizers.make_optimizer(_config(name='sgd', learning_rate=1.0,
                                           grad_clip_norm=2.0), total_steps=1)
    params = {'w': jnp.zeros(4)}
    u, _ = jax.jit(tx.update)({'w': jnp.full(4, 3.0)}, tx.init(params), params)
    np.testing.assert_allclose(u['w'], jnp.full(4, -1.0), rtol=1e-6)  # Norm 6 -> 2.

  @parameterized.parameters(
      ('sgd', (), ('learning_rate',)),
      ('momentum', ('l1_prox',), ('learning_rate', 'momentum', 'l1_prox')),
      ('adamw', ('max_norm', 'grad_clip_norm'),
       ('learning_rate', 'b1', 'b2', 'grad_clip_norm', 'max_norm')),
  )
  def test_hyperparam_names_are_the_state_keys(self, name, include, expected):
    cfg = _config(name=name)
    self.assertEqual(optimizers.hyperparam_names(cfg, include), expected)
    state = optimizers.make_optimizer(cfg, 1, include=include).init(_params())
    self.assertEqual(tuple(state.hyperparams), expected)

  def test_nonzero_config_value_is_included_without_asking(self):
    state = optimizers.make_optimizer(_config(name='sgd', weight_decay=0.1), 1).init(
        _params())
    np.testing.assert_allclose(state.hyperparams['weight_decay'], 0.1)


class HyperparamTest(absltest.TestCase):

  def test_set_hyperparams_changes_the_step(self):
    tx = optimizers.make_optimizer(_config(name='sgd', learning_rate=0.1), 1)
    params, grads = {'w': jnp.ones(3)}, {'w': jnp.full(3, 2.0)}
    state = optimizers.set_hyperparams(tx.init(params), learning_rate=0.25)
    u, state = jax.jit(tx.update)(grads, state, params)
    np.testing.assert_allclose(u['w'], jnp.full(3, -0.5))
    self.assertEqual(state.hyperparams['learning_rate'].dtype, jnp.float32)

  def test_set_hyperparams_rejects_names_not_in_the_chain(self):
    tx = optimizers.make_optimizer(_config(name='sgd'), 1)
    with self.assertRaisesRegex(KeyError, 'include'):
      optimizers.set_hyperparams(tx.init({'w': jnp.ones(2)}), l1_prox=0.1)

  def test_vmap_over_weight_decay_matches_separate_runs_and_compiles_once(self):
    params = _params()
    grads_fn = lambda p: jax.tree.map(lambda w: 0.3 * w - 0.1, p)
    tx = optimizers.make_optimizer(_config(name='adam', learning_rate=0.05), 15,
                                   include=('weight_decay',))

    def body(carry, _):
      p, s = carry
      u, s = tx.update(grads_fn(p), s, p)
      return (optax.apply_updates(p, u), s), None

    @jax.jit
    @chex.assert_max_traces(n=1)
    def member(wd):
      s = optimizers.set_hyperparams(tx.init(params), weight_decay=wd)
      return jax.lax.scan(body, (params, s), None, length=15)[0][0]

    swept = jax.jit(jax.vmap(member))(jnp.array([0.0, 0.3]))
    for i, wd in enumerate((0.0, 0.3)):
      chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], swept),
                                  member(jnp.float32(wd)), rtol=1e-6, atol=1e-7)
    no_decay = _train(optimizers.make_optimizer(_config(name='adam', learning_rate=0.05),
                                                15), params, grads_fn, 15)
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[0], swept), no_decay,
                                rtol=1e-6, atol=1e-7)
    self.assertGreater(float(jnp.abs(swept['Dense_0']['kernel'][0]
                                     - swept['Dense_0']['kernel'][1]).max()), 1e-2)


class ValidationTest(parameterized.TestCase):

  @parameterized.parameters(
      ('name', 'rmsprop'), ('name', 'SGD'), ('schedule', 'linear'),
      ('learning_rate', -0.1), ('learning_rate', float('nan')), ('learning_rate', '0.1'),
      ('weight_decay', -1e-4), ('l1_prox', -0.1), ('l1_subgradient', -0.1),
      ('max_norm', -3.0), ('grad_clip_norm', -1.0), ('grad_clip_norm', float('inf')),
      ('momentum', 1.0), ('momentum', -0.1), ('b1', 1.5), ('b2', 1.0), ('b1', True),
      ('mask', '['), ('mask', None),
  )
  def test_bad_value_raises_one_line_config_error_naming_the_field(self, key, value):
    fields = _config().to_dict()  # A dict: ConfigDict itself refuses some bad types.
    fields[key] = value
    with self.assertRaises(ConfigError) as ctx:
      optimizers.make_optimizer(fields, 10)
    self.assertEqual(ctx.exception.field, f'optimizer.{key}')
    self.assertTrue(str(ctx.exception).startswith(f'optimizer.{key}='))
    self.assertNotIn('\n', str(ctx.exception))

  def test_unknown_name_lists_the_allowed_ones(self):
    with self.assertRaisesRegex(ConfigError, 'sgd, momentum, adam, adamw'):
      optimizers.make_optimizer(_config(name='lamb'), 10)

  def test_cosine_needs_positive_total_steps(self):
    with self.assertRaisesRegex(ConfigError, '^total_steps=0'):
      optimizers.make_optimizer(_config(schedule='cosine'), 0)

  def test_unknown_include_name_raises(self):
    with self.assertRaisesRegex(ConfigError, '^include='):
      optimizers.make_optimizer(_config(), 10, include=('dropout',))


if __name__ == '__main__':
  absltest.main()
