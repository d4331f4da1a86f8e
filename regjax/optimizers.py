"""Builds the optax optimizer from `config.optimizer`, with sweepable hyperparameters.

Every numeric hyperparameter lives in the optimizer state as a float array
(`optax.inject_hyperparams`), so a vectorized runner can `jax.vmap` training over
them: it builds one optimizer, then overwrites `opt_state.hyperparams[name]` per
member with `set_hyperparams`. Names in `opt_state.hyperparams`:

  learning_rate   always; the PEAK rate (the schedule multiplies it inside the chain).
  momentum        name == 'momentum'.
  b1, b2          name in ('adam', 'adamw').
  each registered transform (grad_clip_norm, l1_subgradient, weight_decay,
                  l1_prox, max_norm, ...) only when included (`included_transforms`):
                  when the config value is > 0, or when named in `include`.

The regularizing transforms are those registered in regjax/regularizers.py. One whose
config value is 0 is left out of the chain (cheaper and bit-for-bit the plain optimizer).
A sweep whose members mix 0 and > 0 passes `include=(name, ...)` so that every member
shares one compiled chain; each transform is an exact no-op at 0, also when traced.
"""

import inspect
import math
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import optax

from regjax import masks
from regjax import regularizers
from regjax.errors import ConfigError

OPTIMIZERS = ('sgd', 'momentum', 'adam', 'adamw')
SCHEDULES = ('constant', 'cosine')
_UNIT_INTERVAL = ('momentum', 'b1', 'b2')


def _field(opt_config: Any, key: str) -> Any:
  try:
    return opt_config[key]
  except (KeyError, AttributeError) as e:
    raise ConfigError(f'optimizer.{key}', None, 'required field is missing') from e


def _is_number(value: Any) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def validate_optimizer_config(opt_config: Any) -> None:
  """Raises ConfigError (one line, naming 'optimizer.<field>') on any bad field."""
  name = _field(opt_config, 'name')
  if name not in OPTIMIZERS:
    raise ConfigError('optimizer.name', name, f'one of {", ".join(OPTIMIZERS)}')
  schedule = _field(opt_config, 'schedule')
  if schedule not in SCHEDULES:
    raise ConfigError('optimizer.schedule', schedule, f'one of {", ".join(SCHEDULES)}')
  lr = _field(opt_config, 'learning_rate')
  if not (_is_number(lr) and lr >= 0):
    raise ConfigError('optimizer.learning_rate', lr, 'a finite number >= 0')
  for entry in regularizers.transform_list():
    regularizers.strength({'optimizer': opt_config}, entry)
  for key in _UNIT_INTERVAL:
    value = _field(opt_config, key)
    if not (_is_number(value) and 0 <= value < 1):
      raise ConfigError(f'optimizer.{key}', value, 'a number in [0, 1)')
  masks.compile_pattern(_field(opt_config, 'mask'), 'optimizer.mask')


def included_transforms(opt_config: Any, include: Iterable[str] = ()) -> tuple[str, ...]:
  """The registered transforms in the chain, in chain order: value > 0 or in `include`."""
  include = (include,) if isinstance(include, str) else tuple(include)
  names = regularizers.transform_names()
  for key in include:
    if key not in names:
      raise ConfigError('include', key, f'names from {", ".join(names)}')
  return tuple(k for k in names if k in include or _field(opt_config, k) > 0)


def hyperparam_names(opt_config: Any, include: Iterable[str] = ()) -> tuple[str, ...]:
  """Returns the `opt_state.hyperparams` keys of make_optimizer(opt_config, _, include)."""
  name = _field(opt_config, 'name')
  base = {'sgd': (), 'momentum': ('momentum',)}.get(name, ('b1', 'b2'))
  return ('learning_rate',) + base + included_transforms(opt_config, include)


def make_optimizer(opt_config: Any, total_steps: int,
                   include: Iterable[str] = ()) -> optax.GradientTransformation:
  """Returns the optimizer for `config.optimizer` (an optax.inject_hyperparams chain).

  Chain, each regularizer only if included (regjax/regularizers.py, in its stage order):
    1. 'gradient' transforms on the raw loss gradient: clip_global_norm(grad_clip_norm)
       first, so the clip acts on data gradients and does not shrink the L1 term added
       next; l1_subgradient (+ lambda * sign(w), as if lambda*||w||_1 were in the loss, so
       it goes through momentum / Adam statistics like the loss gradient).
    2. base scaling: identity (sgd) | optax.trace(momentum) | optax.scale_by_adam(b1, b2).
    3. 'update' transforms: add_decayed_weights(weight_decay), decoupled (Loshchilov &
       Hutter 2019): after momentum/Adam so it neither accumulates in momentum nor is
       rescaled by Adam's second moment; with zero gradient each step multiplies masked
       weights by exactly (1 - lr * weight_decay). 'adamw' is this chain with adam; it
       equals optax.adamw. 'adam' with weight_decay > 0 is therefore also decoupled;
       coupled L2 is `config.penalty.l2`.
    4. scale_by_learning_rate(lr_t), lr_t = learning_rate * schedule(step).
    5. 'step' transforms on the final step: l1_proximal(lr_t * l1_prox) (with sgd it is
       ISTA, exact zeros; with momentum/Adam the same soft-threshold, not the
       preconditioned prox), then max_norm, a projection on the final weights
       (Srivastava 2014).
  Regularizers touch only leaves matching the `optimizer.mask` regex.

  Args:
    opt_config: `config.optimizer` (see regjax/schema.py), or a dict with its fields.
    total_steps: optimizer steps in the whole run (>= 1 for the cosine schedule, which
      decays the rate from learning_rate to 0 over them).
    include: registered transform names to keep in the chain even at value 0 (a sweep
      whose members mix 0 and > 0 shares one chain; each is an exact no-op at 0).

  Raises:
    ConfigError: on a bad config field, total_steps or include name.
  """
  validate_optimizer_config(opt_config)
  name = _field(opt_config, 'name')
  if _field(opt_config, 'schedule') == 'cosine':
    if not (isinstance(total_steps, int) and total_steps >= 1):
      raise ConfigError('total_steps', total_steps, 'an int >= 1 for the cosine schedule')
    lr_factor = optax.cosine_decay_schedule(1.0, total_steps)
  else:
    lr_factor = None
  mask_fn = masks.regex_mask_fn(_field(opt_config, 'mask'), 'optimizer.mask')
  included = included_transforms(opt_config, include)

  # inject_hyperparams turns each numeric argument into a state array; `chain` takes the
  # included transforms' strengths by name (its signature is set below, since
  # inject_hyperparams binds arguments by signature).
  def chain(learning_rate, momentum=None, b1=None, b2=None, **strengths):
    if lr_factor is None:
      lr_t = learning_rate
    else:
      lr_t = lambda count: learning_rate * lr_factor(count)
    ctx = regularizers.TransformContext(mask=mask_fn, learning_rate=lr_t)

    def stage(name):
      return [t.make(strengths[t.name], ctx) for t in regularizers.transform_list(name)
              if t.name in strengths]

    parts = stage('gradient')
    if name == 'momentum':
      parts.append(optax.trace(decay=momentum, nesterov=False))
    elif name in ('adam', 'adamw'):
      parts.append(optax.scale_by_adam(b1=b1, b2=b2))
    parts += stage('update')
    parts.append(optax.scale_by_learning_rate(lr_t))
    parts += stage('step')
    return optax.chain(*parts)

  names = hyperparam_names(opt_config, included)
  chain.__signature__ = inspect.Signature(
      [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in names])
  hparams = {k: float(_field(opt_config, k)) for k in names}
  return optax.inject_hyperparams(chain)(**hparams)


def set_hyperparams(opt_state: Any, **values: Any) -> Any:
  """Returns opt_state with `hyperparams[name] = value` (functional; vmap/jit-safe).

  Values may be floats or (traced) arrays; each is cast to the stored dtype. Names must
  already be in the state (see the module docstring / `hyperparam_names`).
  """
  hparams = dict(opt_state.hyperparams)
  for key, value in values.items():
    if key not in hparams:
      raise KeyError(
          f'{key!r} is not in this optimizer state (has {sorted(hparams)}); build it '
          f'with make_optimizer(..., include=({key!r},)) to sweep it')
    hparams[key] = jnp.asarray(value, dtype=jnp.asarray(hparams[key]).dtype)
  return opt_state._replace(hyperparams=hparams)


def get_hyperparams(opt_state: Any) -> dict[str, jax.Array]:
  """Returns a copy of the hyperparameter arrays in opt_state (name -> float array)."""
  return dict(opt_state.hyperparams)
