r"""Experiment 12: dropout as Srivastava et al. (2014) used it, and what dropped units do.

  python -m experiments.srivastava --out=/tmp/srivastava [--mnist_dir=DIR] [--seeds=8] \
      [--smoke]

Srivastava, Hinton, Krizhevsky, Sutskever and Salakhutdinov ("Dropout: a simple way to
prevent neural networks from overfitting", JMLR 2014) trained wide ReLU MLPs on MNIST
with momentum SGD, a max-norm constraint c = 3-4 on each hidden unit's incoming weights
(which let them use high learning rates) and long training. On the CPU budget of this
project (a 2x256 MLP on a 5,000-image subset, 30 epochs of batch 100: see the report for
what is cut) this script measures four things. p is the probability of KEEPING a unit, as
in the paper; regjax's `model.dropout_rate` is 1 - p.

  A. Four arms -- none, dropout (p = 0.5 on each hidden layer), max-norm (c = 3.5) and
     dropout + max-norm -- each with its learning rate chosen per seed on validation
     accuracy from a grid (never on test). Test accuracy of the chosen run, paired by
     seed against none, Holm over the three rows; dropout + max-norm against dropout
     alone as a secondary, separate comparison.
  B. The rate sweep of the paper's Figure 9: p varied at a fixed width n, and at a fixed
     expected number of kept units p*n (n = k / p), with max-norm, at the learning rate
     that dropout + max-norm chose most often in A (a validation choice; every p trains
     at it, so p = 1 is not at its own best learning rate when A's arms differ).
  C. A data-size curve: at each training-set size the dropout rate (including none) and
     the learning rate are chosen jointly per seed on validation; the gain over no
     dropout with its own learning rate chosen on validation, per size.
  D. The classic notebook says the weights of dropped units "are not updated". One
     training step on one example with a known mask (the mask the model draws from the
     step's key, read off the model's own Dropout layers): the update of each dropped
     unit's incoming weights and bias under SGD (exactly 0), SGD with max-norm (0),
     SGD with weight decay, momentum and Adam (not 0 once they carry state; Adam's
     first step is 0 too), and how many units a batch of 100 drops for every example.

Every run is regjax's one training program (`train.RunGroup`, regjax/program.py); a run
is trained once and reused wherever parts share it (B's fixed-n points at p = 0.5 and 1
are A's runs at the chosen learning rate; C's size of part A reuses A's and B's runs).
The test set is touched once per run, at its end, on its last weights.

Writes results.json, report.md, srivastava_arms.png, srivastava_rates.png and
srivastava_datasize.png into --out.
"""

import collections
import dataclasses
import functools
import math
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments import common
from regjax import models
from regjax import report
from regjax import train
from regjax import trainer as trainer_lib
from regjax import tuning
from regjax.data import Dataset, load_dataset

ARMS_FIGURE = 'srivastava_arms.png'
RATES_FIGURE = 'srivastava_rates.png'
SIZE_FIGURE = 'srivastava_datasize.png'
SELECT = ('val_accuracy', 'max')  # How a learning rate or a dropout rate is chosen.
ALPHA = 0.05


@dataclasses.dataclass(frozen=True)
class Setting:
  """Sizes of the experiment (full run or smoke). Rates here are KEEP probabilities p."""
  train_size: int                 # Training images of parts A, B (a prefix of the split).
  validation_fraction: float      # Of the 60k pool; the same validation set everywhere.
  widths: tuple[int, ...]         # Hidden widths of parts A, C, D (and B's fixed n).
  batch_size: int
  epochs: int                     # Parts A, B; C trains max(A's steps, min_epochs).
  momentum: float
  max_norm: float                 # c, on each unit's incoming weights (kernel column).
  keep: float                     # p of the dropout arms (hidden layers only).
  learning_rates: tuple[float, ...]  # Part A's grid (peak rates, cosine decay to 0).
  keep_probs: tuple[float, ...]   # Part B's p values.
  kept_units: int                 # Part B's fixed p*n.
  sweep_seeds: int                # Seeds of parts B and C.
  sizes: tuple[int, ...]          # Part C's training-set sizes.
  size_keeps: tuple[float, ...]   # Part C's grid of p (1.0 = no dropout), times the
                                  # learning rates of part A.
  min_epochs: int                 # Part C: at least this many epochs at every size.
  warmup_steps: int               # Part D: steps before the probed step.
  sgd_rate: float                 # Part D: learning rate of the SGD variants.
  checked: tuple[str, ...]        # Part D: keys of `check_optimizers` to run.


FULL = Setting(train_size=5000, validation_fraction=0.05, widths=(256, 256),
               batch_size=100, epochs=30, momentum=0.95, max_norm=3.5, keep=0.5,
               learning_rates=(0.03, 0.1), keep_probs=(0.25, 0.5, 0.75, 1.0),
               kept_units=128, sweep_seeds=3, sizes=(1000, 5000, 54000),
               size_keeps=(1.0, 0.5), min_epochs=10, warmup_steps=20,
               sgd_rate=0.03,
               checked=('sgd', 'sgd_max_norm', 'sgd_weight_decay', 'momentum', 'adam'))
SMOKE = Setting(train_size=600, validation_fraction=0.1, widths=(32, 32), batch_size=50,
                epochs=3, momentum=0.9, max_norm=3.5, keep=0.5, learning_rates=(0.1, 0.3),
                keep_probs=(0.5, 1.0), kept_units=16, sweep_seeds=2, sizes=(300, 600),
                size_keeps=(1.0, 0.5), min_epochs=2, warmup_steps=3, sgd_rate=0.03,
                checked=('sgd', 'adam'))

# Part A's arms: (name, uses dropout, uses max-norm).
ARMS = (('none', False, False), ('dropout', True, False), ('max-norm', False, True),
        ('dropout + max-norm', True, True))


@dataclasses.dataclass(frozen=True)
class Spec:
  """One training configuration (all seeds share it)."""
  widths: tuple[int, ...]
  keep: float       # Keep probability of each hidden layer (1.0 = no dropout).
  lr: float
  max_norm: float   # 0 = off.
  size: int
  epochs: int


def rate_of(keep: float) -> float:
  """regjax's dropout rate (drop probability) of a keep probability."""
  return round(1.0 - keep, 12)


class Runs:
  """Trains (spec, seed) runs once each and remembers their results."""

  def __init__(self, s: Setting, base: ml_collections.ConfigDict, data: Dataset,
               log: Callable[[str], None]):
    self.s, self.base, self.data, self.log = s, base, data, log
    self.cache: dict[tuple[Spec, int], dict[str, Any]] = {}
    self._subsets: dict[int, Dataset] = {}

  def subset(self, size: int) -> Dataset:
    """The first `size` examples of the training split (the validation set is fixed)."""
    if size not in self._subsets:
      d = self.data
      self._subsets[size] = dataclasses.replace(d, train_idx=d.train_idx[:size],
                                                y_train=d.y_train[:size])
    return self._subsets[size]

  def config(self, spec: Spec) -> ml_collections.ConfigDict:
    s = self.s
    return common.override(
        self.base, data__train_size=spec.size, model__widths=spec.widths,
        model__dropout_rate=rate_of(spec.keep), optimizer__name='momentum',
        optimizer__momentum=s.momentum, optimizer__learning_rate=spec.lr,
        optimizer__schedule='cosine', optimizer__max_norm=spec.max_norm,
        train__batch_size=s.batch_size, train__epochs=spec.epochs,
        early_stopping__enabled=False)

  def run(self, spec: Spec, seed: int) -> dict[str, Any]:
    """The result of one run: its record's numbers, curves and unit norms."""
    key = (spec, seed)
    if key in self.cache:
      return self.cache[key]
    # max_norm is always in the chain (an exact no-op at 0), so runs with and without it
    # share one compiled program; no coupled penalty is in the loss.
    group = train.RunGroup([train.Run(self.config(spec), seed, self.subset(spec.size))],
                           penalty_terms=(), include=('max_norm',))
    ((record, history, variables),) = group.fit()
    norms = hidden_unit_norms(variables['params'], len(spec.widths))
    out_norms = np.linalg.norm(
        np.asarray(variables['params'][f'Dense_{len(spec.widths)}']['kernel']), axis=0)
    out = {
        'spec': dataclasses.asdict(spec), 'seed': seed,
        **{k: record[k] for k in ('val_accuracy', 'val_loss', 'test_accuracy', 'test_loss',
                                  'train_accuracy', 'train_loss', 'diverged',
                                  'seconds_per_epoch', 'epochs_run')},
        'above_c': float(np.mean(norms > 0.999 * self.s.max_norm)),
        'max_unit_norm': float(norms.max()),
        # The output layer's kernel is constrained too (optimizer.mask 'kernel$').
        'output_above_c': float(np.mean(out_norms > 0.999 * self.s.max_norm)),
        'output_max_norm': float(out_norms.max()),
        'val_accuracy_curve': [r['val_accuracy'] for r in history],
        'train_loss_curve': [r['train_loss'] for r in history],
    }
    self.cache[key] = out
    self.log(f'  {describe(spec)} seed {seed}: val {100 * out["val_accuracy"]:.2f}% '
             f'(test read once: {100 * out["test_accuracy"]:.2f}%), '
             f'{out["seconds_per_epoch"]:.2f} s/epoch')
    return out


def describe(spec: Spec) -> str:
  mn = f', max-norm {spec.max_norm:g}' if spec.max_norm else ''
  return (f'{"x".join(map(str, spec.widths))} p={spec.keep:g} lr={spec.lr:g}{mn} '
          f'n={spec.size} {spec.epochs} ep')


def hidden_unit_norms(params: Mapping[str, Any], layers: int) -> np.ndarray:
  """Euclidean norms of each hidden unit's incoming weights (kernel columns), all layers."""
  return np.concatenate([
      np.linalg.norm(np.asarray(params[f'Dense_{i}']['kernel']), axis=0)
      for i in range(layers)])


# ----------------------------------------------------------------------------- statistics


def verdict(mean: float, significant: bool) -> str:
  """'holds' (significant, in the claimed direction: mean > 0), 'does not hold'
  (significant, the other way) or 'not resolved'."""
  if not significant:
    return 'not resolved'
  return 'holds' if mean > 0 else 'does not hold'


def p_text(row: Mapping[str, Any]) -> str:
  floor = (' (the floor)' if math.isfinite(row['p_value'])
           and row['p_value'] <= row['min_p'] * (1 + 1e-9) else '')
  return f"p = {row['p_value']:.3g}{floor}, Holm {row['p_adjusted']:.3g}"


def ci_text(row: Mapping[str, Any], scale: float = 100.0) -> str:
  text = f"{row['mean'] * scale:+.2f}"
  if math.isfinite(row['ci_low']):
    text += f" [{row['ci_low'] * scale:+.2f}, {row['ci_high'] * scale:+.2f}]"
  return text


# ----------------------------------------------------------------------------- part D


def keep_masks(model, params, x: jax.Array, key: jax.Array) -> dict[int, jax.Array]:
  """{hidden layer i: bool (B, width_i)} -- the units each example keeps in a training
  step that applies `model` with dropout key `key` (pure; jit it).

  Read off the model's own Dropout layers: applied with every kernel 0 and every bias 1,
  each hidden unit's activation is relu(1) = 1, so a Dropout output is non-zero exactly
  where its unit is kept. The mask depends only on the key and the shape (models.py
  `keep_mask`), so it is the mask of the real step.
  """
  probe = jax.tree_util.tree_map_with_path(
      lambda path, a: (jnp.zeros_like(a) if jax.tree_util.keystr(path).endswith("'kernel']")
                       else jnp.ones_like(a)), params)
  is_dropout = lambda mdl, _: isinstance(mdl, models.Dropout) and mdl.rate > 0
  _, state = model.apply({'params': probe}, x, train=True, rngs={'dropout': key},
                         capture_intermediates=is_dropout, mutable=['intermediates'])
  out = {}
  for name, sub in state['intermediates'].items():
    if name.startswith('_Hidden_'):
      (value,) = sub['Dropout_0']['__call__']
      out[int(name.rsplit('_', 1)[1])] = value != 0
  return out


def step_grads(model, params, x: jax.Array, y: jax.Array, key: jax.Array) -> Any:
  """Gradient of a training step's data loss (dropout key `key`) w.r.t. params."""
  def loss(params):
    logits = model.apply({'params': params}, x, train=True, rngs={'dropout': key})
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return jax.grad(loss)(params)


# Compiled once per model (Linen modules hash by their fields): the optimizers share them.
_keep_masks_jit = jax.jit(keep_masks, static_argnums=0)
_step_grads_jit = jax.jit(step_grads, static_argnums=0)


def dropped_unit_check(config: ml_collections.ConfigDict, data: Dataset,
                       warmups: Sequence[int], seed: int = 0) -> list[dict[str, Any]]:
  """One step on one example after each number of `warmups` steps: the update of the
  incoming weights (kernel column and bias) of the units dropped in that step.

  Returns per warmup {'warmup', 'batch_size', 'per_layer': [{'layer', 'units', 'dropped',
  'kept_active' (kept, non-zero gradient), 'zero_grad_dropped', 'dropped_exact_zero',
  'max_abs_update_dropped', 'mean_abs_update_dropped', 'mean_abs_update_kept'}],
  'batch_dropped_everywhere': {layer: units dropped for every example of the first
  training batch}}.
  """
  trainer = trainer_lib.make_trainer(config, data.num_classes, data.num_train,
                                     penalty_terms=())
  model = trainer.model
  masks_fn = functools.partial(_keep_masks_jit, model)
  grads_fn = functools.partial(_step_grads_jit, model)
  init_key, shuffle_key, dropout_key = trainer_lib.run_keys(seed)
  step = jax.jit(trainer.train_step)
  order = np.asarray(trainer_lib.batch_order(shuffle_key, 0, data.num_train,
                                             trainer.batch_size))
  x_train, y_train = data.x_train, data.y_train
  start = trainer.init(init_key, x_train[:1])
  first = masks_fn(start.params, x_train[order[0]],
                   trainer_lib.step_key(dropout_key, start.step))
  batch_dropped = {i: int(np.sum(~np.asarray(m).any(axis=0))) for i, m in first.items()}
  x1, y1 = x_train[order[0][:1]], y_train[order[0][:1]]
  results = []
  for warmup in warmups:
    state = start
    for t in range(warmup):
      rows = order[t % len(order)]
      state, _ = step(state, x_train[rows], y_train[rows], {}, dropout_key)
    key = trainer_lib.step_key(dropout_key, state.step)
    masks = masks_fn(state.params, x1, key)
    grads = grads_fn(state.params, x1, y1, key)
    new, _ = step(state, x1, y1, {}, dropout_key)
    per_layer = []
    for i, mask in sorted(masks.items()):
      kept, dense = np.asarray(mask)[0], f'Dense_{i}'
      stack = lambda tree, dense=dense: np.concatenate(
          [np.asarray(tree[dense]['kernel']), np.asarray(tree[dense]['bias'])[None]], axis=0)
      delta = stack(new.params) - stack(state.params)
      grad = np.abs(stack(grads)).max(axis=0)
      dropped = ~kept
      active = kept & (grad > 0)
      moved = np.abs(delta)
      per_layer.append({
          'layer': i, 'units': int(kept.size), 'dropped': int(dropped.sum()),
          'kept_active': int(active.sum()),
          'zero_grad_dropped': int(np.sum(grad[dropped] == 0)),
          'dropped_exact_zero': int(np.sum(moved[:, dropped].max(axis=0) == 0)),
          'max_abs_update_dropped': float(moved[:, dropped].max()) if dropped.any() else 0.0,
          'mean_abs_update_dropped': (float(moved[:, dropped].mean()) if dropped.any()
                                      else 0.0),
          'mean_abs_update_kept': float(moved[:, active].mean()) if active.any() else 0.0,
      })
    results.append({'warmup': warmup, 'batch_size': trainer.batch_size,
                    'per_layer': per_layer, 'batch_dropped_everywhere': batch_dropped})
  return results


def check_optimizers(s: Setting) -> list[tuple[str, dict[str, Any]]]:
  """Part D's optimizers in `s.checked`: (name, optimizer overrides)."""
  table = {
      'sgd': ('SGD', {'name': 'sgd', 'learning_rate': s.sgd_rate}),
      'sgd_max_norm': (f'SGD + max-norm {s.max_norm:g}',
                       {'name': 'sgd', 'learning_rate': s.sgd_rate, 'max_norm': s.max_norm}),
      'sgd_weight_decay': ('SGD + weight decay 5e-4', {'name': 'sgd', 'learning_rate':
                                                       s.sgd_rate, 'weight_decay': 5e-4}),
      'momentum': (f'momentum {s.momentum:g}', {'name': 'momentum', 'learning_rate':
                                                s.sgd_rate, 'momentum': s.momentum}),
      'adam': ('Adam 1e-3', {'name': 'adam', 'learning_rate': 1e-3}),
  }
  return [table[k] for k in s.checked]


# ----------------------------------------------------------------------------- the run


def run(out_dir: str, mnist_dir: str = '', smoke: bool = False, seeds: int = 8,
        log: Callable[[str], None] = common.log) -> dict[str, Any]:
  """Runs parts A-D; writes results.json, report.md and the three figures."""
  s = SMOKE if smoke else FULL
  if seeds < 2:
    raise ValueError('seeds must be >= 2')
  sweep_seeds = min(s.sweep_seeds, seeds)
  out = common.Outputs(out_dir, 'Experiment 12: dropout as Srivastava et al. (2014) used it')
  base = common.base_config(smoke, mnist_dir)
  base = common.override(base, data__validation_fraction=s.validation_fraction,
                         data__train_size=0)
  data = load_dataset(base.data)
  runs = Runs(s, base, data, log)
  steps_a = s.epochs * (s.train_size // s.batch_size)

  # A. Four arms, learning rate chosen per seed on validation.
  log(f'A. four arms x {len(s.learning_rates)} learning rates x {seeds} seeds')
  arm_runs: dict[str, dict[int, list[dict[str, Any]]]] = {}
  records, chosen = [], {}
  for name, dropout, max_norm in ARMS:
    arm_runs[name] = {}
    for seed in range(seeds):
      grid = [runs.run(Spec(s.widths, s.keep if dropout else 1.0, lr,
                            s.max_norm if max_norm else 0.0, s.train_size, s.epochs), seed)
              for lr in s.learning_rates]
      arm_runs[name][seed] = grid
      j = tuning.choose(grid, *SELECT)
      chosen.setdefault(name, []).append(s.learning_rates[j])
      records.append({'variant': name, **grid[j], 'chosen_lr': s.learning_rates[j]})
  summary = report.summarize(records, baseline='none')
  secondary = report.summarize([r for r in records if r['variant'] in
                                ('dropout', 'dropout + max-norm')], baseline='dropout')[1]
  counts = collections.Counter(chosen['dropout + max-norm'])
  lr_star = max(s.learning_rates, key=lambda lr: (counts[lr], -s.learning_rates.index(lr)))
  log(f'A done; dropout + max-norm chose {dict(counts)} -> part B uses lr {lr_star:g}')

  # B. Rate sweep at fixed n and at fixed p*n.
  log('B. rate sweep')
  n_fixed = s.widths[0]
  layers = len(s.widths)
  sweep = {'fixed n': {}, 'fixed pn': {}}
  for p in s.keep_probs:
    for curve, width in (('fixed n', n_fixed), ('fixed pn', round(s.kept_units / p))):
      spec = Spec((width,) * layers, p, lr_star, s.max_norm, s.train_size, s.epochs)
      sweep[curve][p] = [runs.run(spec, seed) for seed in range(sweep_seeds)]
  p_low = min(s.keep_probs)
  p_mid = 0.5 if 0.5 in s.keep_probs else sorted(s.keep_probs)[len(s.keep_probs) // 2]
  acc = lambda rs, key: np.array([r[key] for r in rs])
  b_named = []
  if p_low < p_mid:
    b_named.append(('fixed n: p = %g fits the training set worse than p = %g' % (p_low, p_mid),
                    acc(sweep['fixed n'][p_mid], 'train_accuracy')
                    - acc(sweep['fixed n'][p_low], 'train_accuracy')))
  b_named.append(('fixed n: p = %g beats no dropout (p = 1) on test, both at lr %g'
                  % (p_mid, lr_star),
                  acc(sweep['fixed n'][p_mid], 'test_accuracy')
                  - acc(sweep['fixed n'][1.0], 'test_accuracy')))
  if sweep['fixed pn'][p_low][0]['spec']['widths'] != sweep['fixed n'][p_low][0]['spec']['widths']:
    b_named.append(('p = %g: fixed p*n (n = %d) beats fixed n (n = %d) on test'
                    % (p_low, round(s.kept_units / p_low), n_fixed),
                    acc(sweep['fixed pn'][p_low], 'test_accuracy')
                    - acc(sweep['fixed n'][p_low], 'test_accuracy')))
  b_rows = common.paired_rows(b_named)
  best_p = {curve: max(s.keep_probs, key=lambda p: (np.mean(acc(pts[p], 'val_accuracy')), -p))
            for curve, pts in sweep.items()}

  # C. Data-size curve: dropout rate and learning rate chosen jointly on validation.
  log('C. data-size curve')
  size_runs, size_rows = {}, []
  grid_points = grid_points_of(s)
  for size in s.sizes:
    steps_per_epoch = size // s.batch_size
    epochs = max(-(-steps_a // steps_per_epoch), s.min_epochs)
    size_runs[size] = {
        (p, lr): [runs.run(Spec(s.widths, p, lr, s.max_norm, size, epochs), seed)
                  for seed in range(sweep_seeds)] for p, lr in grid_points}
    for seed in range(sweep_seeds):
      grid = [size_runs[size][point][seed] for point in grid_points]
      j = tuning.choose(grid, *SELECT)
      # No dropout, with its own learning rate chosen on validation.
      base = [size_runs[size][(1.0, lr)][seed] for lr in s.learning_rates]
      jb = tuning.choose(base, *SELECT)
      size_rows.append({'size': size, 'epochs': epochs, 'seed': seed,
                        'chosen_keep': grid_points[j][0], 'chosen_lr': grid_points[j][1],
                        'test_chosen': grid[j]['test_accuracy'],
                        'val_chosen': grid[j]['val_accuracy'],
                        'no_dropout_lr': s.learning_rates[jb],
                        'test_no_dropout': base[jb]['test_accuracy']})
  gain = lambda size: np.array([r['test_chosen'] - r['test_no_dropout']
                                for r in size_rows if r['size'] == size])
  c_rows = common.paired_rows([(f'n = {size}: tuned dropout beats no dropout', gain(size))
                        for size in s.sizes])
  scarce = common.paired_rows([(f'gain at n = {s.sizes[0]} exceeds gain at n = {s.sizes[-1]}',
                         gain(s.sizes[0]) - gain(s.sizes[-1]))])[0]

  # D. Dropped units' weight updates.
  log('D. dropped-unit updates')
  check_cfg = runs.config(Spec(s.widths, s.keep, s.sgd_rate, 0.0, s.train_size, s.epochs))
  check = []
  for name, opt in check_optimizers(s):
    cfg = common.override(check_cfg, **{f'optimizer__{k}': v for k, v in opt.items()})
    for res in dropped_unit_check(cfg, runs.subset(s.train_size), (0, s.warmup_steps)):
      check.append({'optimizer': name, **res})

  write_outputs(out, s, seeds, sweep_seeds, data, runs, arm_runs, records, summary,
                secondary, chosen, lr_star, sweep, b_rows, best_p, size_runs, size_rows,
                c_rows, scarce, check)
  out.write()
  return out.results


# ----------------------------------------------------------------------------- outputs


def grid_points_of(s: Setting) -> list[tuple[float, float]]:
  """Part C's grid: (keep probability, learning rate)."""
  return [(p, lr) for p in s.size_keeps for lr in s.learning_rates]


def write_outputs(out: common.Outputs, s: Setting, seeds: int, sweep_seeds: int,
                  data: Dataset, runs: Runs, arm_runs, records, summary, secondary,
                  chosen, lr_star, sweep, b_rows, best_p, size_runs, size_rows, c_rows,
                  scarce, check) -> None:
  """Figures, report.md text and results.json content."""
  arm_names = [a[0] for a in ARMS]
  width = 'x'.join(map(str, s.widths))
  setup = (f'{data.name}: the first {s.train_size:,} images of the training split, '
           f'validation {data.num_val:,} held-out training images (the same everywhere), '
           f'test all {len(data.y_test):,}. MLP {width} ReLU, momentum SGD '
           f'({s.momentum:g}), batch {s.batch_size}, cosine decay of the learning rate to 0 '
           f'over {s.epochs} epochs ({s.epochs * (s.train_size // s.batch_size):,} steps), '
           f'no early stopping (the last weights count). Dropout p = {s.keep:g} on each hidden '
           f'layer (none on the inputs); max-norm c = {s.max_norm:g} on each unit\'s '
           'incoming weights (all layers\' kernels).')

  # Figure: arms.
  fig, axes = common.new_figure(1, 3, width=4.3, height=3.5)
  ax = axes[0, 0]
  by = {n: {r['seed']: r for r in records if r['variant'] == n} for n in arm_names}
  for seed in range(seeds):
    ax.plot(range(len(arm_names)), [100 * by[n][seed]['test_accuracy'] for n in arm_names],
            color='gray', lw=0.6, alpha=0.6)
  for i, n in enumerate(arm_names):
    vals = [100 * r['test_accuracy'] for r in by[n].values()]
    ax.scatter([i] * len(vals), vals, s=10, color=f'C{i}', zorder=3)
    ax.plot([i - 0.25, i + 0.25], [np.mean(vals)] * 2, color='black', lw=1.5)
  ax.set_xticks(range(len(arm_names)), [n.replace(' + ', '\n+ ') for n in arm_names],
                fontsize=7)
  ax.set_ylabel('test accuracy (%), chosen learning rate')
  ax.set_title('per seed (lines pair seeds)', fontsize=9)
  ax = axes[0, 1]
  for i, n in enumerate(arm_names):
    curves = [next(g for g in arm_runs[n][seed]
                   if g['spec']['lr'] == by[n][seed]['chosen_lr'])['val_accuracy_curve']
              for seed in range(seeds)]
    mean, low, high = common.curve_band(curves)
    ep = np.arange(1, len(mean) + 1)
    ax.plot(ep, 100 * mean, color=f'C{i}', label=n)
    ax.fill_between(ep, 100 * low, 100 * high, color=f'C{i}', alpha=0.15, lw=0)
  ax.set_ylim(max(ax.get_ylim()[0], 90), None)
  ax.set_xlabel('epoch')
  ax.set_ylabel('validation accuracy (%)')
  ax.legend(fontsize=7, frameon=False)
  common.integer_x(ax)
  ax = axes[0, 2]
  rows = [r for r in summary if r['variant'] != 'none']
  for i, r in enumerate(rows):
    ax.errorbar([100 * r['diff_mean']], [i], xerr=[[100 * (r['diff_mean'] - r['diff_ci_low'])],
                                                   [100 * (r['diff_ci_high'] - r['diff_mean'])]],
                fmt='o', color=f'C{i + 1}', capsize=3)
  ax.axvline(0, color='black', lw=0.8)
  ax.set_yticks(range(len(rows)), [r['variant'] for r in rows], fontsize=7)
  ax.set_xlabel('test accuracy - none (pp), 95% t-interval')
  ax.set_title('paired by seed; Holm p in the report', fontsize=9)
  fig.suptitle(f'Four arms: {data.name} {s.train_size:,} images, MLP {width}, momentum SGD, '
               f'learning rate chosen on validation per seed; {seeds} seeds', fontsize=9)
  fig_arms = out.figure(fig, ARMS_FIGURE, 'Test accuracy per arm and seed, validation '
                        'curves of the chosen runs, and the paired differences from none.')

  # Figure: rate sweep.
  fig, axes = common.new_figure(1, 2, width=4.6, height=3.5)
  for ax, key, label in ((axes[0, 0], 'test_accuracy', 'test error (%)'),
                         (axes[0, 1], 'train_accuracy', 'training error (%), inference mode')):
    for curve, style in (('fixed n', 'o-'), ('fixed pn', 's--')):
      ps = sorted(sweep[curve])
      err = np.array([[100 * (1 - r[key]) for r in sweep[curve][p]] for p in ps])
      mu = err.mean(1)
      lbl = (f'fixed n = {s.widths[0]}' if curve == 'fixed n'
             else f'fixed p·n = {s.kept_units}')
      ax.errorbar(ps, mu, yerr=[mu - err.min(1), err.max(1) - mu], fmt=style, capsize=2,
                  ms=4, label=lbl)
    ax.set_xlabel('p (probability of keeping a unit)')
    ax.set_ylabel(label)
    ax.legend(fontsize=7, frameon=False)
  fig.suptitle(f'Srivastava et al. Figure 9 on a CPU budget: {len(s.widths)} hidden layers, '
               f'max-norm {s.max_norm:g}, lr {lr_star:g}; mean of {sweep_seeds} seeds, '
               'bars = min-max', fontsize=9)
  fig_rates = out.figure(fig, RATES_FIGURE, 'Test and training error against the keep '
                         'probability p, at a fixed width and at a fixed expected number '
                         'of kept units.')

  # Figure: data size.
  fig, axes = common.new_figure(1, 2, width=4.6, height=3.5)
  ax = axes[0, 0]
  for i, (p, lr) in enumerate(grid_points_of(s)):
    err = [np.mean([100 * (1 - r['test_accuracy']) for r in size_runs[n][(p, lr)]])
           for n in s.sizes]
    ax.plot(s.sizes, err, 'o-' if p == 1.0 else 's--', color=f'C{i}', ms=4, lw=1,
            label=('no dropout' if p == 1.0 else f'p = {p:g}') + f', lr {lr:g}')
  for key, style, label in (('test_no_dropout', 'k^-', 'no dropout, lr chosen'),
                            ('test_chosen', 'k*-', 'p and lr chosen')):
    err = [np.mean([100 * (1 - r[key]) for r in size_rows if r['size'] == n])
           for n in s.sizes]
    ax.plot(s.sizes, err, style, ms=7, lw=1.5, label=label)
  ax.set_xscale('log')
  ax.set_yscale('log')
  ax.set_xlabel('training examples')
  ax.set_ylabel('test error (%)')
  ax.legend(fontsize=7, frameon=False)
  ax = axes[0, 1]
  for i, (n, r) in enumerate(zip(s.sizes, c_rows)):
    ax.errorbar([n], [100 * r['mean']],
                yerr=[[100 * (r['mean'] - r['ci_low'])], [100 * (r['ci_high'] - r['mean'])]]
                if math.isfinite(r['ci_low']) else None, fmt='o', color='C0', capsize=3)
    ax.scatter([n] * r['n'], 100 * np.array(r['diffs']), s=8, color='gray', zorder=3)
  ax.axhline(0, color='black', lw=0.8)
  ax.set_xscale('log')
  ax.set_xlabel('training examples')
  ax.set_ylabel('(p, lr) chosen - no dropout (lr chosen), test acc (pp)', fontsize=8)
  fig.suptitle(f'Data size: MLP {width}, max-norm {s.max_norm:g}; p from '
               f'{list(s.size_keeps)} and lr from {list(s.learning_rates)} chosen per seed on '
               f'validation; {sweep_seeds} seeds (dots), 95% t-intervals', fontsize=9)
  fig_size = out.figure(fig, SIZE_FIGURE, 'Test error against the training-set size, and '
                        'the gain of dropout (rate chosen on validation) over none.')

  # Report text.
  out.add(f'Setup. {setup} Learning rate chosen per seed and arm on validation accuracy '
          f'from {list(s.learning_rates)} (peak, cosine-decayed). Accuracies in %, '
          'differences in percentage points (pp), "± x" = sample std over seeds, [a, b] = '
          '95% t-interval of the difference paired by seed, p = exact sign-flip test '
          f'(n pairs give p >= 2/2^n), Holm over the rows of a table; a claim "holds" when '
          f'its Holm-adjusted p < {ALPHA:g} in the claimed direction.')
  body = []
  by_arm = {r['variant']: r for r in summary}
  for n in arm_names:
    r = by_arm[n]
    rs = [x for x in records if x['variant'] == n]
    lr_counts = collections.Counter(chosen[n])
    lrs = ', '.join(f'{lr:g}: {lr_counts[lr]}' for lr in s.learning_rates)
    if n == 'none':
      diff, pv, v = '(baseline)', '', ''
    else:
      diff = common.diff_text(r).rstrip(' *')
      pv = f"{r['p_value']:.3g} / {r['p_adjusted']:.3g}"
      v = verdict(r['diff_mean'], r['significant'])
    body.append([n, lrs, common.pm([x['test_accuracy'] for x in rs]), diff, pv, v,
                 common.pm([x['train_accuracy'] for x in rs]),
                 common.pm([x['val_accuracy'] for x in rs]),
                 f"{100 * np.mean([x['above_c'] for x in rs]):.0f}",
                 f"{np.mean([x['max_unit_norm'] for x in rs]):.2f}",
                 f"{100 * np.mean([x['output_above_c'] for x in rs]):.0f}",
                 f"{np.mean([x['output_max_norm'] for x in rs]):.2f}"])
  out.add('## A. Dropout, max-norm, both, neither',
          common.markdown_table(
              ['arm', 'chosen lr (seeds)', 'test acc %', 'Δ vs none pp [95% CI]',
               'p / Holm p', 'claim "beats none"', 'train acc %', 'val acc %',
               f'hidden units at norm >= c={s.max_norm:g} (%)', 'largest hidden unit norm',
               'output units at norm >= c (%)', 'largest output unit norm'], body),
          f"Secondary (one comparison, not in the Holm family): dropout + max-norm - dropout "
          f"alone = {common.diff_text(secondary).rstrip(' *')} pp, p = "
          f"{secondary['p_value']:.3g} ({seeds} pairs): "
          f"{verdict(secondary['diff_mean'], secondary['p_value'] < ALPHA)}.",
          fig_arms)

  body = []
  for curve in ('fixed n', 'fixed pn'):
    for p in sorted(sweep[curve]):
      rs = sweep[curve][p]
      body.append([curve, f'{p:g}', rs[0]['spec']['widths'][0],
                   common.pm([1 - r['test_accuracy'] for r in rs]),
                   common.pm([1 - r['train_accuracy'] for r in rs]),
                   common.pm([1 - r['val_accuracy'] for r in rs])])
  claims = [[r['name'], ci_text(r), p_text(r), verdict(r['mean'], r['significant'])]
            for r in b_rows]
  out.add('## B. Rate sweep at fixed n and at fixed p·n (Figure 9)',
          f'p = keep probability; fixed n = {s.widths[0]} units per hidden layer; fixed '
          f'p·n = {s.kept_units} (n = {s.kept_units}/p, rounded); lr {lr_star:g} (the rate '
          f'dropout + max-norm chose most often in A), max-norm {s.max_norm:g}, '
          f'{sweep_seeds} seeds. Errors in %.',
          common.markdown_table(['curve', 'p', 'n', 'test error %', 'train error %',
                                 'val error %'], body),
          f'Every p trains at lr {lr_star:g}; in A the no-dropout arms chose '
          + ', '.join(f'{lr:g} in {collections.Counter(chosen["none"] + chosen["max-norm"])[lr]}'
                      for lr in s.learning_rates)
          + f' of their {2 * seeds} seed choices, so the p = 1 points are at a learning rate '
          'that suits dropout, not necessarily theirs. '
          f'Best p on mean validation accuracy: fixed n {best_p["fixed n"]:g}, fixed p·n '
          f'{best_p["fixed pn"]:g}. Claims (accuracy differences in pp, Holm over these '
          f'rows; {sweep_seeds} seeds give p >= {2 / 2 ** sweep_seeds:g}):',
          common.markdown_table(['claim', 'Δ pp [95% CI]', 'p', 'verdict'], claims),
          fig_rates)

  body = []
  for n, r in zip(s.sizes, c_rows):
    rs = [x for x in size_rows if x['size'] == n]
    ch = collections.Counter((x['chosen_keep'], x['chosen_lr']) for x in rs)
    base_lr = collections.Counter(x['no_dropout_lr'] for x in rs)
    body.append([f'{n:,}', rs[0]['epochs'],
                 common.pm([x['test_no_dropout'] for x in rs]),
                 ', '.join(f'{lr:g}: {base_lr[lr]}' for lr in s.learning_rates),
                 common.pm([x['test_chosen'] for x in rs]),
                 ', '.join(f'p {p:g} lr {lr:g}: {ch[(p, lr)]}' for p, lr in grid_points_of(s)
                           if ch[(p, lr)]),
                 ci_text(r), p_text(r), verdict(r['mean'], r['significant'])])
  out.add('## C. Data size',
          f'The first n images of the training split; every size trains max('
          f'{s.epochs * (s.train_size // s.batch_size):,} steps, {s.min_epochs} epochs); '
          f'per seed, p from {list(s.size_keeps)} (1 = no dropout) and the learning rate '
          f'from {list(s.learning_rates)} are chosen jointly on validation accuracy; the '
          'gain is measured against no dropout with its learning rate chosen on validation '
          f'(so neither side keeps the other\'s learning rate); max-norm {s.max_norm:g} '
          f'everywhere; {sweep_seeds} seeds.',
          common.markdown_table(['n', 'epochs', 'test acc %, no dropout', 'its lr (seeds)',
                                 'test acc %, p and lr chosen', 'chosen (seeds)',
                                 'gain pp [95% CI]', 'p', 'claim "dropout helps"'], body),
          f"Does dropout help more when data are scarce? Gain at n = {s.sizes[0]:,} minus "
          f"gain at n = {s.sizes[-1]:,}: {ci_text(scarce)} pp, p = {scarce['p_value']:.3g}: "
          f"{verdict(scarce['mean'], scarce['significant'])}.", fig_size)

  body = []
  for c in check:
    for layer in c['per_layer']:
      body.append([c['optimizer'], c['warmup'] + 1, layer['layer'] + 1,
                   f"{layer['dropped']}/{layer['units']}",
                   f"{layer['zero_grad_dropped']}/{layer['dropped']}",
                   f"{layer['dropped_exact_zero']}/{layer['dropped']}",
                   f"{layer['max_abs_update_dropped']:.3g}",
                   f"{layer['mean_abs_update_dropped']:.3g}",
                   f"{layer['mean_abs_update_kept']:.3g}"])
  batch = check[0]
  out.add('## D. Are the weights of dropped units updated?',
          f'One training step (`Trainer.train_step`) on ONE training example with dropout '
          f'p = {s.keep:g}, MLP {width}, the mask read off the model\'s Dropout layers for '
          "that step's key. Incoming weights of a unit = its kernel column and bias. Step 1 "
          f'is the very first step; step {s.warmup_steps + 1} follows {s.warmup_steps} steps '
          f'on batches of {batch["batch_size"]}. "kept, active" units are kept with a non-zero '
          'gradient (ReLU on).',
          common.markdown_table(['optimizer', 'step', 'layer', 'dropped', 'dropped: grad = 0',
                                 'dropped: update exactly 0', 'max |Δw| dropped',
                                 'mean |Δw| dropped', 'mean |Δw| kept, active'], body),
          'In a batch of %d examples the mask is drawn per example: units dropped for every '
          'example of the first batch: %s (expected %d x 2^-%d).' % (
              batch['batch_size'],
              ', '.join(f'layer {i + 1}: {k}' for i, k in
                        sorted(batch['batch_dropped_everywhere'].items())),
              s.widths[0], batch['batch_size']))

  out.results.update({
      'settings': dataclasses.asdict(s) | {'data': data.name, 'seeds': seeds,
                                           'sweep_seeds': sweep_seeds, 'lr_star': lr_star,
                                           'select': list(SELECT)},
      'arms': {'records': records, 'summary': summary, 'secondary': secondary,
               'chosen_lr': chosen},
      'rate_sweep': {'runs': {c: {str(p): v for p, v in pts.items()}
                              for c, pts in sweep.items()},
                     'claims': b_rows, 'best_p_on_validation': best_p},
      'data_size': {'per_seed': size_rows, 'claims': c_rows, 'scarce_vs_plenty': scarce},
      'dropped_units': check,
      'runs': [v for v in runs.cache.values()],
  })


if __name__ == '__main__':
  common.script_main(run, default_seeds=8, seeds_help='Seeds of part A (parts B, C use '
                     'at most 3).', min_seeds=2)
