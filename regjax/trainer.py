"""The static half of a run: model, optimizer, loss, and its pure step, epoch and evaluation.

Design for sweeps: everything a sweep varies numerically enters as an array. Penalty
strengths travel in `hparams = {name: f32[]}` (an argument of every step); optimizer
strengths live in the optimizer state through `optax.inject_hyperparams` (see
regjax/optimizers.py). So a whole run can be `jax.vmap`-ed over seeds and strengths
without recompiling (regjax/program.py). A penalty that no run of a program uses
(strength 0 everywhere) is left out of it (`Trainer.penalty_terms`).

Randomness and data order are defined here once:
  * `run_keys(seed)`: one `jax.random.key(seed)` split into three roles, `init`
    (parameters), `shuffle` (data order) and `dropout` (masks);
  * `batch_order(shuffle_key, epoch, n, batch_size)`: epoch e visits the positions
    `permutation(fold_in(shuffle, e), n)` in batches, the remainder dropped;
  * `step_key(dropout_key, step)`: step t's dropout masks use `fold_in(dropout, t)`.
So a run is reproducible and needs no RNG state: the states after epoch k are all that a
resumed run needs to end bit for bit as if never interrupted.

Inputs may be stored as uint8 (images) and are decoded inside the program by a lookup
table (`decode`), so a dataset is held on the device once, at a quarter of its float32
size, and gives the same float32 values as numpy's decoding. Standardization
(`data.standardize`) is part of decoding too: (x - shift) * scale with the run's own
training-split statistics, the same two float32 operations as `Dataset.decode`.
"""

import dataclasses
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from regjax import masks
from regjax import penalties
from regjax import regularizers
from regjax.errors import ConfigError
from regjax.models import make_model
from regjax.optimizers import make_optimizer

Metrics = dict[str, jax.Array]
# positions (B,) int32 -> (inputs (B, ...) float32, labels (B,) int32).
BatchFn = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (a pytree).

  step: int32 scalar, optimizer steps taken. params / batch_stats: the Linen variable
  collections (`batch_stats` is {} without BatchNorm). opt_state: the optax state.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def run_keys(seed: int | jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The run's three keys (init, shuffle, dropout) from one `jax.random.key(seed)`."""
  init_key, shuffle_key, dropout_key = jax.random.split(jax.random.key(seed), 3)
  return init_key, shuffle_key, dropout_key


def batch_order(shuffle_key: jax.Array, epoch: jax.Array, n: int,
                batch_size: int) -> jax.Array:
  """Epoch `epoch`'s training positions, (n // batch_size, batch_size) int32.

  `permutation(fold_in(shuffle_key, epoch), n)` cut into full batches: every epoch has
  its own order, and the last n % batch_size positions of the order are dropped.
  """
  steps = n // batch_size
  order = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n)
  return order[:steps * batch_size].reshape(steps, batch_size)


def step_key(dropout_key: jax.Array, step: jax.Array) -> jax.Array:
  """The dropout key of optimizer step `step` (int32): `fold_in(dropout_key, step)`."""
  return jax.random.fold_in(dropout_key, step)


def decode(raw: jax.Array, table: jax.Array | None, shift: jax.Array | None = None,
           scale: jax.Array | None = None) -> jax.Array:
  """Stored inputs (B, ...) -> float32 model inputs (B, ...), as `Dataset.decode` does.

  table: None (float inputs, used as they are) or a (256,) float32 lookup for uint8.
  shift, scale: float32 of one example's shape (`data.standardize`): the result is
    (x - shift) * scale. None adds no operation at all.
  """
  x = raw if table is None else table[raw]
  if shift is not None:
    x = (x - shift) * scale
  return x


def _accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.mean(jnp.argmax(logits, -1) == labels)


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
  """The static half of a run: model, optimizer and masks. Its methods are pure.

  Attributes:
    model: a Linen module called as `model.apply(vars, x, train=...)`.
    tx: the optax transformation.
    penalty_mask: regex on parameter paths that the coupled penalty and the weight
      diagnostics (norms, zero fraction) cover.
    batch_size: training batch size (the epoch's remainder is dropped).
    eval_batch_size: evaluation batch size (memory only; results do not depend on it).
    penalty_terms: names of the registered coupled penalties in the loss. A term left
      out is not computed at all: at strength 0 it only added exact zeros to the loss and
      its gradient, yet cost ~20% of a batch-32 MLP step on a CPU (measured). Keep a term
      in whenever its strength may be > 0 in `hparams`, as a sweep's strengths are.
    batch_sharding: where each training batch lives (a `jax.sharding.NamedSharding`
      splitting the batch axis over devices), or None on one device. Under `jax.jit`
      the program keeps its one-device meaning: the loss mean, and BatchNorm's batch
      statistics, are over the global batch.
  """
  model: nn.Module
  tx: optax.GradientTransformation
  penalty_mask: str = r'kernel$'
  batch_size: int = 32
  eval_batch_size: int = 1024
  penalty_terms: tuple[str, ...] = ('l1', 'l2')
  batch_sharding: Any = None

  def init(self, key: jax.Array, sample_x: jax.Array) -> TrainState:
    """Initializes params / batch_stats from one input example batch (1, ...)."""
    variables = self.model.init(key, sample_x, train=False)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get('batch_stats', {}),
                      opt_state=self.tx.init(params))

  def _mask(self, params):
    return masks.regex_mask(params, self.penalty_mask, field='penalty.mask')

  def weight_stats(self, params) -> Metrics:
    """{'weight_l1', 'weight_l2' (Euclidean norm), 'zero_fraction'} over masked weights."""
    norms = penalties.weight_norms(params, self._mask(params))
    return {'weight_l1': norms['l1'], 'weight_l2': norms['l2'],
            'zero_fraction': norms['zero_fraction']}

  def penalty(self, params, hparams: dict[str, jax.Array]) -> jax.Array:
    """The coupled penalty of `params` (f32 scalar): the sum over `penalty_terms` of
    hparams[term] * that term's function on the masked weights (regjax/regularizers.py;
    l1: sum |w|, l2: 0.5 * sum w^2)."""
    total = jnp.zeros((), jnp.float32)
    for entry in regularizers.penalty_list():
      if entry.name in self.penalty_terms:
        total = total + hparams[entry.name] * entry.fn(params, self._mask(params))
    return total

  def train_step(self, state: TrainState, x: jax.Array, y: jax.Array,
                 hparams: dict[str, jax.Array], dropout_key: jax.Array
                 ) -> tuple[TrainState, Metrics]:
    """One optimizer step on a batch x (B, ...), y (B,) int32.

    The dropout key of this step is `step_key(dropout_key, state.step)`. Returns the new
    state and {'train_loss' (data loss only), 'train_penalty', 'train_accuracy'}.
    """
    rng = step_key(dropout_key, state.step)

    def loss_fn(params):
      logits, updates = self.model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, x, train=True,
          rngs={'dropout': rng}, mutable=['batch_stats'])
      data_loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      penalty = self.penalty(params, hparams)
      return data_loss + penalty, (data_loss, penalty, logits, updates)

    grads, (data_loss, penalty, logits, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
    opt_updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, opt_updates)
    new_state = TrainState(step=state.step + 1, params=params,
                           batch_stats=updates.get('batch_stats', state.batch_stats),
                           opt_state=opt_state)
    return new_state, {'train_loss': data_loss, 'train_penalty': penalty,
                       'train_accuracy': _accuracy(logits, y)}

  def epoch_from(self, state: TrainState, batch: BatchFn, n: int,
                 hparams: dict[str, jax.Array], shuffle_key: jax.Array,
                 dropout_key: jax.Array, epoch: jax.Array) -> tuple[TrainState, Metrics]:
    """One epoch over n training positions as one `lax.scan` (one dispatch per epoch).

    `batch(positions)` gathers a batch; positions come from `batch_order`. Returns the
    new state and the epoch's mean of each step metric.
    """
    def body(state, positions):
      x, y = batch(positions)
      if self.batch_sharding is not None:
        x = jax.lax.with_sharding_constraint(x, self.batch_sharding)
        y = jax.lax.with_sharding_constraint(y, self.batch_sharding)
      return self.train_step(state, x, y, hparams, dropout_key)

    order = batch_order(shuffle_key, epoch, n, self.batch_size)
    state, step_metrics = jax.lax.scan(body, state, order)
    return state, jax.tree.map(jnp.mean, step_metrics)

  def train_epoch(self, state: TrainState, x: jax.Array, y: jax.Array,
                  hparams: dict[str, jax.Array], shuffle_key: jax.Array,
                  dropout_key: jax.Array, epoch: jax.Array) -> tuple[TrainState, Metrics]:
    """`epoch_from` over float inputs x (N, ...) and labels y (N,) held in full."""
    return self.epoch_from(state, lambda p: (x[p], y[p]), x.shape[0], hparams,
                           shuffle_key, dropout_key, epoch)

  def evaluate_from(self, params, batch_stats, chunk: BatchFn, n: int) -> Metrics:
    """Inference-mode {'loss', 'accuracy'} over n examples read by `chunk(positions)`.

    Runs in chunks of min(eval_batch_size, n) positions; the last chunk is padded with
    position 0 and masked out, so every example counts exactly once.
    """
    bs = min(self.eval_batch_size, n)
    nb = -(-n // bs)
    positions = jnp.arange(nb * bs)
    valid = (positions < n).reshape(nb, bs)
    positions = jnp.where(positions < n, positions, 0).reshape(nb, bs)
    variables = {'params': params, 'batch_stats': batch_stats}

    def body(totals, batch):
      idx, vb = batch
      xb, yb = chunk(idx)
      logits = self.model.apply(variables, xb, train=False)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
      correct = jnp.argmax(logits, -1) == yb
      return (totals[0] + jnp.sum(loss * vb), totals[1] + jnp.sum(correct * vb)), None

    (loss_sum, correct_sum), _ = jax.lax.scan(body, (jnp.float32(0), jnp.float32(0)),
                                              (positions, valid))
    return {'loss': loss_sum / n, 'accuracy': correct_sum / n}

  def evaluate(self, params, batch_stats, x: jax.Array, y: jax.Array) -> Metrics:
    """`evaluate_from` over float inputs x (N, ...) and labels y (N,) held in full."""
    return self.evaluate_from(params, batch_stats, lambda p: (x[p], y[p]), x.shape[0])

  def eval_sums(self, params, batch_stats, x: jax.Array, y: jax.Array,
                valid: jax.Array, table: Any = None, shift: jax.Array | None = None,
                scale: jax.Array | None = None) -> jax.Array:
    """[sum of loss, number correct] over the examples of x (B, ...) where `valid` (B,).

    x may be stored inputs, decoded here with `table`, `shift` and `scale` (see
    `decode`).
    """
    logits = self.model.apply({'params': params, 'batch_stats': batch_stats},
                              decode(x, table, shift, scale), train=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    correct = jnp.argmax(logits, -1) == y
    return jnp.stack([jnp.sum(loss * valid), jnp.sum(correct * valid)])


def make_trainer(config: ml_collections.ConfigDict, num_classes: int, num_train: int,
                 penalty_terms: tuple[str, ...] | None = None,
                 include: tuple[str, ...] = (), batch_sharding: Any = None) -> Trainer:
  """Builds the `Trainer` of `config` for a training set of `num_train` examples.

  penalty_terms: the coupled penalties in the loss (see `Trainer`); None keeps every
    registered one, for callers that pass strengths other than the config's at run
    time. A caller whose strengths are fixed by the config passes
    `active_penalties(config)`.
  include: registered transforms kept in the optimizer chain even at 0 (see
    regjax/optimizers.py), so runs with other strengths can share the program.
  batch_sharding: see `Trainer.batch_sharding`.
  """
  names = regularizers.penalty_names()
  penalty_terms = names if penalty_terms is None else tuple(penalty_terms)
  for term in penalty_terms:
    if term not in names:
      raise ConfigError('penalty_terms', term, f'names from {", ".join(names)}')
  bs, ebs, epochs = config.train.batch_size, config.train.eval_batch_size, config.train.epochs
  if not isinstance(epochs, int) or epochs < 1:
    raise ConfigError('train.epochs', epochs, 'must be an integer >= 1')
  if not isinstance(bs, int) or not 1 <= bs <= num_train:
    raise ConfigError('train.batch_size', bs,
                      f'must be an integer in [1, {num_train}] (the training set size)')
  if not isinstance(ebs, int) or ebs < 1:
    raise ConfigError('train.eval_batch_size', ebs, 'must be an integer >= 1')
  for entry in regularizers.penalty_list():
    regularizers.strength(config, entry)
  model = make_model(config.model, num_classes)
  tx = make_optimizer(config.optimizer, total_steps=(num_train // bs) * epochs,
                      include=include)
  return Trainer(model=model, tx=tx, penalty_mask=config.penalty.mask,
                 batch_size=bs, eval_batch_size=ebs, penalty_terms=penalty_terms,
                 batch_sharding=batch_sharding)


def penalty_hparams(config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
  """Validated coupled-penalty strengths of a full config, {name: f32 scalar}."""
  return {e.name: jnp.float32(regularizers.strength(config, e))
          for e in regularizers.penalty_list()}


def active_penalties(*configs: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The registered penalties whose strength is > 0 in any of the given full configs."""
  return tuple(e.name for e in regularizers.penalty_list()
               if any(regularizers.strength(c, e) > 0 for c in configs))


def active_transforms(*configs: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The registered transforms whose strength is > 0 in any of the given full configs."""
  return tuple(e.name for e in regularizers.transform_list()
               if any(regularizers.strength(c, e) > 0 for c in configs))
