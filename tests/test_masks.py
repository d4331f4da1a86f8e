"""Tests for regjax.masks: '/'-joined param paths and regex masks usable by optax."""

from absl.testing import absltest
from absl.testing import parameterized
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from regjax import masks
from regjax.errors import ConfigError


def _mlp_params():
  """A Flax-Linen-shaped params tree: Dense, BatchNorm, Dense."""
  return {
      'Dense_0': {'kernel': jnp.ones((4, 3)), 'bias': jnp.ones((3,))},
      'BatchNorm_0': {'scale': jnp.ones((3,)), 'bias': jnp.ones((3,))},
      'Dense_1': {'kernel': jnp.ones((3, 2)), 'bias': jnp.ones((2,))},
  }


class _ConvNet(nn.Module):
  """Conv -> BatchNorm -> Dense, to get real Flax parameter names."""

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(4, (3, 3))(x)
    x = nn.BatchNorm(use_running_average=True)(x)
    return nn.Dense(2)(x.reshape((x.shape[0], -1)))


class MasksTest(parameterized.TestCase):

  def test_path_names_join_dict_keys_with_slash(self):
    names = masks.path_names(_mlp_params())
    self.assertEqual(names['Dense_0']['kernel'], 'Dense_0/kernel')
    self.assertEqual(names['BatchNorm_0']['bias'], 'BatchNorm_0/bias')

  def test_param_path_handles_sequence_indices(self):
    tree = {'layers': [{'kernel': 1.0}, {'kernel': 2.0}]}
    paths = [masks.param_path(kp)
             for kp, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    self.assertEqual(paths, ['layers/0/kernel', 'layers/1/kernel'])

  def test_default_mask_selects_kernels_only(self):
    mask = masks.regex_mask(_mlp_params())
    self.assertEqual(mask, {
        'Dense_0': {'kernel': True, 'bias': False},
        'BatchNorm_0': {'scale': False, 'bias': False},
        'Dense_1': {'kernel': True, 'bias': False},
    })

  def test_default_mask_on_real_flax_params(self):
    variables = _ConvNet().init(jax.random.key(0), jnp.ones((1, 5, 5, 1)))
    mask = masks.regex_mask(variables['params'])
    selected = sorted(name for name, m in zip(
        jax.tree.leaves(masks.path_names(variables['params'])), jax.tree.leaves(mask))
                      if m)
    self.assertEqual(selected, ['Conv_0/kernel', 'Dense_0/kernel'])

  def test_custom_pattern_uses_search_on_the_path(self):
    mask = masks.regex_mask(_mlp_params(), r'^Dense_0/')
    self.assertEqual(jax.tree.leaves(mask).count(True), 2)
    self.assertTrue(mask['Dense_0']['bias'])
    self.assertFalse(mask['Dense_1']['kernel'])

  @parameterized.parameters(('[', 'penalty.mask'), ('(?P<', 'optimizer.mask'))
  def test_invalid_regex_raises_config_error_naming_field(self, pattern, field):
    with self.assertRaisesRegex(ConfigError, f'^{field}=') as ctx:
      masks.regex_mask(_mlp_params(), pattern, field=field)
    self.assertEqual(ctx.exception.field, field)
    self.assertNotIn('\n', str(ctx.exception))

  def test_non_string_pattern_raises(self):
    with self.assertRaisesRegex(ConfigError, 'optimizer.mask'):
      masks.regex_mask_fn(3)

  def test_mask_fn_validates_eagerly_and_matches_regex_mask(self):
    with self.assertRaises(ConfigError):
      masks.regex_mask_fn('(')
    params = _mlp_params()
    self.assertEqual(masks.regex_mask_fn(r'scale$')(params),
                     masks.regex_mask(params, r'scale$'))

  @parameterized.parameters(False, True)
  def test_mask_works_with_optax_masked(self, as_callable):
    params = _mlp_params()
    mask = masks.regex_mask_fn() if as_callable else masks.regex_mask(params)
    tx = optax.masked(optax.add_decayed_weights(0.5), mask)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = jax.jit(tx.update)(zeros, tx.init(params), params)
    # Kernels get 0.5 * w = 0.5; every other leaf passes its zero update through.
    expected = jax.tree.map(jnp.zeros_like, params)
    expected['Dense_0']['kernel'] = jnp.full((4, 3), 0.5)
    expected['Dense_1']['kernel'] = jnp.full((3, 2), 0.5)
    chex.assert_trees_all_equal(updates, expected)


if __name__ == '__main__':
  absltest.main()
