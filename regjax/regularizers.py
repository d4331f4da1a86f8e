"""Every regularizer, registered once: its function, its config field, its place.

Two kinds:

  Penalty    a coupled term `strength * fn(params, mask)` added to the loss; its strength
             is the config field `penalty.NAME` and travels into each step as an array
             (`hparams[NAME]`).
  Transform  a decoupled optax transformation in the optimizer chain; its strength is the
             config field `optimizer.NAME` and lives in the optimizer state
             (`optax.inject_hyperparams`), so it too is an array at run time.

A registration is all a new regularizer needs. It makes the field part of the schema
(default 0 = off; regjax/schema.py reads the registry), sweepable (runs that differ only
in it share one vmapped program; regjax/sweep.py reads the registry), left out of any
program in which it is 0 for every run (so an unused regularizer costs nothing), and
validated (finite and >= 0) everywhere. Registration order is chain order within a stage.

Transform stages (the chain is built in regjax/optimizers.py):
  'gradient'  before the base optimizer: acts on the loss gradient, like a loss term.
  'update'    after momentum / Adam scaling, before the learning rate (decoupled decay).
  'step'      after the learning rate: acts on the final parameter step (proximal steps,
              projections), so it gets the step's learning rate in `TransformContext`.
"""

import contextlib
import dataclasses
from typing import Any, Callable, Iterator

from regjax.errors import ConfigError

PyTree = Any
# The built-ins below import JAX, optax and their implementations only when called:
# config files import the schema, which reads this registry, and loading a config (for
# --help or a flag error) should not wait for JAX.
STAGES = ('gradient', 'update', 'step')


@dataclasses.dataclass(frozen=True)
class TransformContext:
  """What a transform factory may use besides its strength.

  mask: params -> pytree of bools (the `optimizer.mask` regex); the leaves it may touch.
  learning_rate: the step's learning rate, a scalar or a schedule (int32 step -> scalar);
    'step'-stage transforms scale their strength by it (e.g. the L1 prox threshold).
  """
  mask: Callable[[PyTree], PyTree]
  learning_rate: Any


@dataclasses.dataclass(frozen=True)
class Penalty:
  """A coupled penalty: the loss gets `strength * fn(params, mask)`.

  name: its key, and the field `penalty.<name>`. fn: (params, mask) -> f32 scalar, the
  term at strength 1 over the masked weights (`penalty.mask`). doc: the schema comment.
  """
  name: str
  fn: Callable[[PyTree, Any], Any]
  doc: str

  @property
  def field(self) -> str:
    return f'penalty.{self.name}'


@dataclasses.dataclass(frozen=True)
class Transform:
  """A decoupled regularizer: an optax transformation placed at `stage` in the chain.

  name: its key in `opt_state.hyperparams`, and the field `optimizer.<name>`.
  make: (strength, TransformContext) -> optax.GradientTransformation; it must be an exact
    no-op at strength 0 (also when the 0 is traced), so vmapped runs can mix 0 and > 0.
  stage: one of STAGES. doc: the schema comment.
  """
  name: str
  make: Callable[[Any, TransformContext], Any]
  stage: str
  doc: str

  @property
  def field(self) -> str:
    return f'optimizer.{self.name}'


_PENALTIES: dict[str, Penalty] = {}
_TRANSFORMS: dict[str, Transform] = {}
# Names the optimizer section already uses for other things.
_RESERVED = frozenset({'name', 'learning_rate', 'schedule', 'momentum', 'b1', 'b2', 'mask'})


def register_penalty(name: str, fn: Callable[[PyTree, Any], Any],
                     doc: str) -> Penalty:
  """Registers a coupled penalty `penalty.<name>` (default 0); returns it."""
  _check_new(name, _PENALTIES, {'mask'})
  entry = Penalty(name, fn, doc)
  _PENALTIES[name] = entry
  return entry


def register_transform(name: str,
                       make: Callable[[Any, TransformContext], Any],
                       stage: str, doc: str) -> Transform:
  """Registers a decoupled transform `optimizer.<name>` at `stage` (default 0); returns it."""
  if stage not in STAGES:
    raise ValueError(f'stage must be one of {STAGES}, not {stage!r}')
  _check_new(name, _TRANSFORMS, _RESERVED)
  entry = Transform(name, make, stage, doc)
  _TRANSFORMS[name] = entry
  return entry


def _check_new(name: str, table: dict[str, Any], reserved: frozenset[str] | set[str]) -> None:
  if not name.isidentifier() or name in reserved:
    raise ValueError(f'{name!r} is not a usable regularizer name (an identifier, not one '
                     f'of {sorted(reserved)})')
  if name in table:
    raise ValueError(f'a regularizer named {name!r} is already registered')


def unregister(name: str) -> None:
  """Removes a registration (tests register toy regularizers and clean up)."""
  _PENALTIES.pop(name, None)
  _TRANSFORMS.pop(name, None)


@contextlib.contextmanager
def registered(entry: Penalty | Transform) -> Iterator[Penalty | Transform]:
  """Keeps an already registered entry for the duration of a `with` block, then removes it."""
  try:
    yield entry
  finally:
    unregister(entry.name)


def penalty_list() -> tuple[Penalty, ...]:
  """Registered coupled penalties, in registration order."""
  return tuple(_PENALTIES.values())


def transform_list(stage: str | None = None) -> tuple[Transform, ...]:
  """Registered transforms (of one stage, or all), in registration (chain) order."""
  return tuple(t for t in _TRANSFORMS.values() if stage is None or t.stage == stage)


def penalty_names() -> tuple[str, ...]:
  """Names of the registered penalties: the keys of a step's `hparams`."""
  return tuple(_PENALTIES)


def transform_names() -> tuple[str, ...]:
  """Names of the registered transforms, in chain order."""
  return tuple(t.name for stage in STAGES for t in transform_list(stage))


def fields() -> dict[str, str]:
  """{dotted config field: schema comment} of every registered regularizer."""
  return {r.field: r.doc for r in (*_PENALTIES.values(), *_TRANSFORMS.values())}


def strength(config: Any, entry: Penalty | Transform) -> float:
  """The validated strength of `entry` in a full config: a finite number >= 0."""
  section, key = entry.field.split('.')
  try:
    value = config[section][key]
  except (KeyError, AttributeError):
    raise ConfigError(entry.field, None, 'required field is missing') from None
  ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  if not ok or not value >= 0 or value == float('inf'):
    raise ConfigError(entry.field, value, 'a strength must be a finite number >= 0 (0 = off)')
  return float(value)


# ----------------------------------------------------------------------------------------
# The built-in regularizers. The chain order of the transforms is their order here.


def _l1(params: PyTree, mask: Any) -> Any:
  from regjax import penalties  # pylint: disable=g-import-not-at-top  # See the top.
  return penalties.l1_penalty(params, mask)


def _l2(params: PyTree, mask: Any) -> Any:
  from regjax import penalties  # pylint: disable=g-import-not-at-top
  return penalties.l2_penalty(params, mask)


def _clip(c: Any, ctx: TransformContext) -> Any:
  from regjax import transforms  # pylint: disable=g-import-not-at-top
  return transforms.clip_global_norm(c)


def _l1_subgradient(s: Any, ctx: TransformContext) -> Any:
  from regjax import transforms  # pylint: disable=g-import-not-at-top
  return transforms.l1_subgradient(s, ctx.mask)


def _weight_decay(wd: Any, ctx: TransformContext) -> Any:
  import optax  # pylint: disable=g-import-not-at-top
  return optax.add_decayed_weights(wd, ctx.mask)


def _l1_prox(s: Any, ctx: TransformContext) -> Any:
  from regjax import transforms  # pylint: disable=g-import-not-at-top
  # The soft threshold is lr_t * s: ISTA on loss + s * ||w||_1.
  lr = ctx.learning_rate
  threshold = (lambda count: lr(count) * s) if callable(lr) else lr * s
  return transforms.l1_proximal(threshold, ctx.mask)


def _max_norm(c: Any, ctx: TransformContext) -> Any:
  from regjax import transforms  # pylint: disable=g-import-not-at-top
  return transforms.max_norm(c, ctx.mask)


register_penalty('l1', _l1, 'l1 * sum |w| over the masked weights (a loss term).')
register_penalty('l2', _l2, '(l2 / 2) * sum w^2 (a loss term; Keras l2(k) == l2 = 2k here).')
register_transform('grad_clip_norm', _clip, 'gradient',
                   'Clip the global gradient norm to this; 0 = off.')
register_transform('l1_subgradient', _l1_subgradient, 'gradient',
                   'L1 subgradient l1 * sign(w) added to the gradient (no exact zeros).')
register_transform('weight_decay', _weight_decay, 'update',
                   'Decoupled: w -= lr * weight_decay * w each step.')
register_transform('l1_prox', _l1_prox, 'step',
                   'Proximal L1: soft-threshold by lr * l1_prox after each step (exact zeros).')
register_transform('max_norm', _max_norm, 'step',
                   'Per-unit max-norm c on incoming weights; 0 = off.')
