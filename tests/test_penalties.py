"""Tests for regjax.penalties: coupled L1/L2 values, masks, gradients, jit and vmap."""

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from regjax import masks
from regjax import penalties


def _params():
  """Small Flax-shaped tree with exact zeros in the kernels and large non-kernels."""
  rng = np.random.default_rng(0)
  k0 = rng.standard_normal((4, 3)).astype(np.float32)
  k0[0, :] = 0.0  # 3 exact zeros.
  k1 = rng.standard_normal((3, 2)).astype(np.float32)
  k1[1, 1] = 0.0  # 1 exact zero.
  return {
      'Dense_0': {'kernel': jnp.asarray(k0), 'bias': jnp.full((3,), 100.0)},
      'BatchNorm_0': {'scale': jnp.full((3,), -50.0), 'bias': jnp.full((3,), 7.0)},
      'Dense_1': {'kernel': jnp.asarray(k1), 'bias': jnp.full((2,), 9.0)},
  }


def _kernels(params):
  return [np.asarray(params['Dense_0']['kernel'], np.float64),
          np.asarray(params['Dense_1']['kernel'], np.float64)]


class PenaltiesTest(parameterized.TestCase):

  def test_values_match_numpy_and_mask_excludes_biases_and_batchnorm(self):
    params = _params()
    mask = masks.regex_mask(params)
    ks = _kernels(params)
    l1 = sum(np.abs(k).sum() for k in ks)
    sq = sum(np.square(k).sum() for k in ks)
    np.testing.assert_allclose(penalties.l1_penalty(params, mask), l1, rtol=1e-6)
    np.testing.assert_allclose(penalties.l2_penalty(params, mask), 0.5 * sq, rtol=1e-6)
    np.testing.assert_allclose(penalties.elastic_net(params, mask, 0.3, 2.0),
                               0.3 * l1 + 2.0 * 0.5 * sq, rtol=1e-6)
    norms = penalties.weight_norms(params, mask)
    np.testing.assert_allclose(norms['l1'], l1, rtol=1e-6)
    np.testing.assert_allclose(norms['l2'], np.sqrt(sq), rtol=1e-6)
    np.testing.assert_allclose(norms['zero_fraction'], 4 / 18, rtol=1e-6)

  def test_no_mask_means_every_leaf(self):
    params = _params()
    total = sum(np.abs(np.asarray(x, np.float64)).sum() for x in jax.tree.leaves(params))
    np.testing.assert_allclose(penalties.l1_penalty(params), total, rtol=1e-6)

  def test_callable_prefix_and_array_masks_agree(self):
    params = _params()
    expected = penalties.l2_penalty(params, masks.regex_mask(params))
    prefix = {'Dense_0': {'kernel': True, 'bias': False}, 'BatchNorm_0': False,
              'Dense_1': {'kernel': True, 'bias': False}}
    array_mask = jax.tree.map(jnp.asarray, masks.regex_mask(params))
    for mask in (masks.regex_mask_fn(), prefix, array_mask):
      np.testing.assert_allclose(penalties.l2_penalty(params, mask), expected, rtol=1e-6)

  def test_empty_mask_gives_zeros(self):
    params = _params()
    norms = penalties.weight_norms(params, masks.regex_mask(params, r'nothing'))
    chex.assert_trees_all_equal(norms, dict(l1=0.0, l2=0.0, zero_fraction=0.0))

  def test_l2_gradient_is_strength_times_w_on_masked_and_zero_elsewhere(self):
    params = _params()
    mask = masks.regex_mask(params)
    grads = jax.grad(lambda p: penalties.elastic_net(p, mask, 0.0, 0.7))(params)
    expected = jax.tree.map(lambda w, m: 0.7 * w if m else jnp.zeros_like(w),
                            params, mask)
    chex.assert_trees_all_close(grads, expected, rtol=1e-6)

  def test_l1_gradient_is_strength_times_sign(self):
    params = _params()
    mask = masks.regex_mask(params)
    grads = jax.grad(lambda p: penalties.elastic_net(p, mask, 0.25, 0.0))(params)
    k = params['Dense_1']['kernel']
    nonzero = np.asarray(k) != 0
    np.testing.assert_allclose(np.asarray(grads['Dense_1']['kernel'])[nonzero],
                               0.25 * np.sign(np.asarray(k))[nonzero])
    chex.assert_trees_all_equal(grads['BatchNorm_0'],
                                jax.tree.map(jnp.zeros_like, params['BatchNorm_0']))

  def test_jit_and_vmap_over_traced_strengths(self):
    params = _params()
    mask = masks.regex_mask(params)
    l1s = jnp.array([0.0, 0.1, 1.0])
    l2s = jnp.array([1.0, 0.0, 0.5])

    @jax.jit
    @chex.assert_max_traces(n=1)
    def sweep(l1, l2):
      return jax.vmap(lambda a, b: penalties.elastic_net(params, mask, a, b))(l1, l2)

    got = sweep(l1s, l2s)
    sweep(l2s, l1s)  # Different values, same shapes: no retrace.
    expected = [penalties.elastic_net(params, mask, float(a), float(b))
                for a, b in zip(l1s, l2s)]
    chex.assert_shape(got, (3,))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


if __name__ == '__main__':
  absltest.main()
