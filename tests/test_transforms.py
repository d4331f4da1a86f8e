"""Tests for regjax.transforms: L1 prox / subgradient, per-unit max-norm, global clip."""

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from regjax import masks
from regjax import transforms


def _update(tx, updates, params, steps=1):
  """Runs `steps` jitted updates with the same incoming updates; returns the last."""
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(steps):
    out, state = update(updates, state, params)
  return out


def _tree(seed=0, scale=1.0):
  rng = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(scale * rng.standard_normal(s), jnp.float32)
  return {'Dense_0': {'kernel': f(5, 4), 'bias': f(4)},
          'BatchNorm_0': {'scale': f(4), 'bias': f(4)},
          # Half scale: its units (18 inputs) then have norms near the Dense ones (5).
          'Conv_0': {'kernel': 0.5 * f(3, 3, 2, 6), 'bias': f(6)}}


def _numpy_unit_norms(w):
  w = np.asarray(w, np.float64)
  return np.sqrt(np.square(w).reshape(-1, w.shape[-1]).sum(axis=0))


_ZERO_STRENGTH_FACTORIES = {
    'l1_proximal': lambda s: transforms.l1_proximal(s, masks.regex_mask_fn()),
    'l1_subgradient': lambda s: transforms.l1_subgradient(s, masks.regex_mask_fn()),
    'max_norm': lambda s: transforms.max_norm(s, masks.regex_mask_fn()),
    'clip_global_norm': transforms.clip_global_norm,
}


class L1Test(parameterized.TestCase):

  def test_l1_proximal_soft_thresholds_new_weights_to_exact_zeros(self):
    params = {'kernel': jnp.array([1.0, -0.5, 0.2, -2.0, 0.0])}
    updates = {'kernel': jnp.array([0.5, 0.2, -0.15, 0.0, 0.3])}
    # p + u = [1.5, -0.3, 0.05, -2.0, 0.3]; soft-threshold by 0.5.
    out = _update(transforms.l1_proximal(0.5), updates, params)
    new = optax.apply_updates(params, out)['kernel']
    np.testing.assert_allclose(new, [1.0, 0.0, 0.0, -1.5, 0.0], atol=1e-7)
    self.assertEqual(int(jnp.sum(new == 0)), 3)  # Exact zeros, not just small.

  def test_l1_proximal_follows_a_schedule(self):
    params = {'kernel': jnp.array([1.0])}
    updates = {'kernel': jnp.array([0.0])}
    tx = transforms.l1_proximal(lambda count: 0.1 * (count + 1))
    state = tx.init(params)
    got = []
    for _ in range(3):
      out, state = jax.jit(tx.update)(updates, state, params)
      got.append(float(out['kernel'][0]))
    np.testing.assert_allclose(got, [-0.1, -0.2, -0.3], rtol=1e-6)

  def test_l1_proximal_leaves_masked_out_leaves_untouched(self):
    params, updates = _tree(0), _tree(1, scale=0.1)
    out = _update(transforms.l1_proximal(10.0, masks.regex_mask_fn()), updates, params)
    new = optax.apply_updates(params, out)
    self.assertTrue(bool(jnp.all(new['Dense_0']['kernel'] == 0)))  # All thresholded.
    chex.assert_trees_all_equal(out['BatchNorm_0'], updates['BatchNorm_0'])
    chex.assert_trees_all_equal(out['Conv_0']['bias'], updates['Conv_0']['bias'])

  def test_l1_subgradient_adds_strength_times_sign(self):
    params = {'kernel': jnp.array([2.0, -3.0, 0.0]), 'bias': jnp.array([5.0])}
    grads = {'kernel': jnp.array([0.1, 0.1, 0.1]), 'bias': jnp.array([0.1])}
    out = _update(transforms.l1_subgradient(0.5, masks.regex_mask_fn()), grads, params)
    np.testing.assert_allclose(out['kernel'], [0.6, -0.4, 0.1], rtol=1e-6)
    chex.assert_trees_all_equal(out['bias'], grads['bias'])

  def test_transforms_need_params(self):
    tx = transforms.l1_proximal(0.1)
    with self.assertRaisesRegex(ValueError, 'needs params'):
      tx.update({'w': jnp.ones(2)}, tx.init({'w': jnp.ones(2)}))


class MaxNormTest(parameterized.TestCase):

  def test_max_norm_caps_dense_and_conv_units_and_keeps_small_ones(self):
    params, updates = _tree(0, scale=0.5), _tree(1, scale=0.5)
    c = 1.4
    out = _update(transforms.max_norm(c, masks.regex_mask_fn()), updates, params)
    new = optax.apply_updates(params, out)
    for name in ('Dense_0', 'Conv_0'):
      before = np.asarray(params[name]['kernel'] + updates[name]['kernel'])
      after = np.asarray(new[name]['kernel'])
      norms_before = _numpy_unit_norms(before)
      norms_after = _numpy_unit_norms(after)
      big = norms_before > c
      self.assertTrue(big.any() and (~big).any(), name)  # The test covers both cases.
      self.assertLessEqual(norms_after.max(), c + 1e-5)
      np.testing.assert_allclose(norms_after[big], c, rtol=1e-6)
      # Capped units are rescaled, not reshaped.
      np.testing.assert_allclose(after[..., big],
                                 before[..., big] * c / norms_before[big], rtol=1e-5)
      # Units within c get exactly the incoming update.
      np.testing.assert_array_equal(np.asarray(out[name]['kernel'])[..., ~big],
                                    np.asarray(updates[name]['kernel'])[..., ~big])
    chex.assert_trees_all_equal(out['BatchNorm_0'], updates['BatchNorm_0'])
    chex.assert_trees_all_equal(out['Dense_0']['bias'], updates['Dense_0']['bias'])

  def test_unit_norm_axes_convention(self):
    self.assertEqual(transforms.unit_norm_axes(2), (0,))
    self.assertEqual(transforms.unit_norm_axes(4), (0, 1, 2))
    self.assertEqual(transforms.unit_norm_axes(2, unit_axis=0), (1,))
    self.assertIsNone(transforms.unit_norm_axes(1))

  def test_traced_zero_is_off_inside_a_vmapped_sweep(self):
    params, updates = _tree(0, scale=3.0), _tree(1)

    def run(c):
      tx = transforms.max_norm(c, masks.regex_mask_fn())
      return tx.update(updates, tx.init(params), params)[0]

    out = jax.jit(jax.vmap(run))(jnp.array([0.0, -1.0, 0.5]))
    for i in (0, 1):  # c = 0 and c < 0 are off.
      chex.assert_trees_all_equal(jax.tree.map(lambda x: x[i], out), updates)
    capped = optax.apply_updates(params, jax.tree.map(lambda x: x[2], out))
    self.assertLessEqual(_numpy_unit_norms(capped['Conv_0']['kernel']).max(), 0.5 + 1e-6)


class ClipTest(absltest.TestCase):

  def test_clip_global_norm_matches_optax_and_zero_is_off(self):
    updates = _tree(2, scale=3.0)
    got = _update(transforms.clip_global_norm(1.0), updates, None)
    expected, _ = optax.clip_by_global_norm(1.0).update(updates, optax.EmptyState())
    chex.assert_trees_all_close(got, expected, rtol=1e-6)
    np.testing.assert_allclose(optax.tree.norm(got), 1.0, rtol=1e-5)
    zeros = jax.tree.map(jnp.zeros_like, updates)
    chex.assert_trees_all_equal(_update(transforms.clip_global_norm(0.0), zeros, None),
                                zeros)  # optax's own clip gives NaN here.


class ZeroStrengthTest(parameterized.TestCase):

  @parameterized.product(name=sorted(_ZERO_STRENGTH_FACTORIES), traced=(False, True))
  def test_zero_strength_returns_the_incoming_updates_bit_for_bit(self, name, traced):
    params, grads = _tree(0), _tree(1)
    base = optax.sgd(0.1, momentum=0.9)
    base_state, p = base.init(params), params
    tx = _ZERO_STRENGTH_FACTORIES[name](0.0)

    @jax.jit
    def step(u, state, p, strength):
      tx = _ZERO_STRENGTH_FACTORIES[name](strength if traced else 0.0)
      return tx.update(u, state, p)

    state = tx.init(params)
    for _ in range(3):  # Along a real SGD trajectory, so params and updates vary.
      u, base_state = jax.jit(base.update)(grads, base_state, p)
      out, state = step(u, state, p, jnp.float32(0.0))
      chex.assert_trees_all_equal(out, u)
      p = optax.apply_updates(p, u)

  @parameterized.parameters(sorted(_ZERO_STRENGTH_FACTORIES))
  def test_zero_strength_chain_tracks_the_base_optimizer(self, name):
    params, grads = _tree(0), _tree(1)
    base = optax.sgd(0.1, momentum=0.9)

    def run(tx):
      state, p = tx.init(params), params
      for _ in range(3):
        u, state = tx.update(grads, state, p)
        p = optax.apply_updates(p, u)
      return p

    got = jax.jit(lambda s: run(optax.chain(base, _ZERO_STRENGTH_FACTORIES[name](s))))(
        jnp.float32(0.0))
    # Only XLA's fusion choices (a last-bit FMA difference) may separate the two.
    chex.assert_trees_all_close(got, jax.jit(lambda: run(base))(), rtol=1e-6, atol=1e-7)


if __name__ == '__main__':
  absltest.main()
