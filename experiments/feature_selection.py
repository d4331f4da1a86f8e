r"""Does L1 select features? Noise inputs appended to MNIST, and who gets zeroed first.

  python -m experiments.feature_selection --out=/tmp/fs [--mnist_dir=DIR] [--seeds=8] \
      [--smoke]

Experiment 3 (experiments/l1_vs_l2.py) found that proximal L1 zeroes the first-layer rows
of about 14% of the MNIST pixels, nearly all of them pixels that are blank in every
training image. Such a pixel gets no gradient at all, so any shrinkage erases it: that
does not show that L1 tells informative inputs from useless ones. Here the useless
inputs get gradients too. Each flattened image gets k extra inputs that carry no
information about the label:

  uniform noise    k/2 inputs, each value drawn uniformly at random (MNIST: a random byte,
                   decoded like a pixel to [0, 1]);
  permuted pixels  k/2 inputs, each a copy of a "common" pixel (non-zero in >= 10% of the
                   training pool) whose values are permuted across the images: the same
                   distribution as a real, frequently inked pixel, but independent of the
                   label.

The table is written with numpy to a temporary .npz and loaded as data.name = 'npz:PATH'
(an (N, D) feature table); the MLP sees D = 784 + k inputs (digits: 64 + k).

Inputs of a run, by its own training subset (each seed its own split):
  informative  original pixels non-zero in at least one training image; "common" ones
               are non-zero in >= 10% of them, the rest "rare";
  noise        the k added inputs;
  blank        original pixels zero in every training image: they get no gradient, are
               left out of precision and recall, and reported apart.
An input is selected when its row of first-layer weights (784 + k inputs x 128 units) is
not entirely zero: exactly 0 (what the proximal step produces), and, because Adam keeps
pushing small weights off zero, also with a near-zero threshold (max |w| over the row >
NEAR_ZERO). Precision = selected informative / selected (informative + noise); recall =
selected informative / informative. AUROC = the probability that an informative input's
row norm exceeds a noise input's (ties count half): a threshold-free ranking score.

Two optimizer arms, each one vmapped RunGroup over strength x seed, the L1 strength
chosen per seed on validation loss (tuning.choose; strength 0 included, so "no L1" can
win):
  adam      Adam 1e-3 + optimizer.l1_prox (the setting of experiment 3): soft-threshold
            by lr * l1_prox after each Adam step.
  momentum  SGD with heavy-ball momentum 0.9, lr 1e-2, + optimizer.l1_prox: a proximal
            gradient method whose fixed point is the lasso at (1 - 0.9) * l1_prox (the
            threshold acts on the step, which momentum has scaled by 1 / (1 - 0.9)).
Setting: the first 5,000 images of each seed's MNIST split, 5% of the pool (3,000) for
validation (to fit the time budget), MLP 128, batch 32, 20 epochs at a constant learning
rate, final weights.

Outputs in --out: results.json, report.md, fs_paths.png, fs_norms.png.
"""

import dataclasses
import math
import os
import tempfile
from typing import Any, Callable, Mapping, Sequence

import ml_collections
import numpy as np

from experiments import common
from experiments.adamw import paired_table
from regjax import schema
from regjax import stats
from regjax import train
from regjax import tuning
from regjax.data import load_source, split
from regjax.errors import ConfigError

PATHS_FIGURE = 'fs_paths.png'
NORMS_FIGURE = 'fs_norms.png'
SELECT = ('val_loss', 'min')
ALPHA = 0.05
# "Near zero": |w| at most one Adam step at lr 1e-3 (as experiments/l1_vs_l2.py).
NEAR_ZERO = 1e-3
# A pixel inked in at least this share of the images is "common" (noise sources too).
COMMON_FRACTION = 0.1
CRITERIA = ('exact', 'near')  # Selected: row not all exactly 0 / max |w| > NEAR_ZERO.
# Input classes, in the order of `input_classes`.
CLASSES = ('common', 'rare', 'blank', 'uniform', 'permuted')


@dataclasses.dataclass(frozen=True)
class Arm:
  """One optimizer with its grid of l1_prox strengths."""
  name: str
  label: str
  optimizer: str
  learning_rate: float
  strengths: tuple[float, ...]  # 0 first (no L1).
  color: str


@dataclasses.dataclass(frozen=True)
class Settings:
  """Sizes of a run (the full MNIST run or the smoke run on digits)."""
  dataset: str
  train_size: int
  validation_fraction: float
  widths: tuple[int, ...]
  epochs: int
  n_uniform: int
  n_permuted: int
  arms: tuple[Arm, ...]
  seeds: int


def make_settings(smoke: bool, seeds: int) -> Settings:
  """The full MNIST run, or a seconds-long one on digits (tests).

  The strength grids run from no zero rows to everything zeroed, found with one seed,
  reading validation numbers only; they are denser where inputs start to be zeroed.
  """
  if seeds < 2:
    raise ConfigError('seeds', seeds, 'must be >= 2 (paired comparisons)')
  if smoke:
    arms = (Arm('adam', 'Adam + L1 prox', 'adam', 1e-2, (0.0, 0.3), 'tab:red'),
            Arm('momentum', 'momentum SGD + L1 prox', 'momentum', 5e-2, (0.0, 0.1),
                'tab:purple'))
    return Settings(dataset='digits', train_size=0, validation_fraction=0.2, widths=(16,),
                    epochs=3, n_uniform=16, n_permuted=16, arms=arms, seeds=seeds)
  arms = (Arm('adam', 'Adam + L1 prox', 'adam', 1e-3,
              (0.0, 1e-2, 3e-2, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0), 'tab:red'),
          Arm('momentum', 'momentum SGD + L1 prox', 'momentum', 1e-2,
              (0.0, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.2, 0.3), 'tab:purple'))
  return Settings(dataset='mnist', train_size=5000, validation_fraction=0.05,
                  widths=(128,), epochs=20, n_uniform=50, n_permuted=50, arms=arms,
                  seeds=seeds)


# ----------------------------------------------------------------------------- data


def noisy_table(x_pool: np.ndarray, x_test: np.ndarray, n_uniform: int, n_permuted: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Flattens the inputs and appends uniform-noise and permuted-pixel columns.

  x_pool, x_test: (N, ...) stored inputs (uint8 images or floats in [0, 1]).
  Returns (pool (N_pool, D + k), test (N_test, D + k), source pixels of the permuted
  columns). Uniform noise is a random byte for uint8 inputs, else U[0, 1); a permuted
  column copies a common pixel (non-zero in >= COMMON_FRACTION of the pool) and permutes
  it across the rows, separately in the pool and the test set.
  """
  pool, test = x_pool.reshape(len(x_pool), -1), x_test.reshape(len(x_test), -1)
  common_pixels = np.flatnonzero((pool > 0).mean(0) >= COMMON_FRACTION)
  sources = np.sort(rng.choice(common_pixels, n_permuted, replace=False))

  def extend(x):
    if x.dtype == np.uint8:
      uniform = rng.integers(0, 256, size=(len(x), n_uniform), dtype=np.uint8)
    else:
      uniform = rng.random((len(x), n_uniform), dtype=np.float32)
    permuted = np.stack([x[rng.permutation(len(x)), j] for j in sources], 1)
    return np.concatenate([x, uniform.astype(x.dtype), permuted.astype(x.dtype)], 1)

  return extend(pool), extend(test), sources


def input_classes(x_train: np.ndarray, n_original: int, n_uniform: int) -> np.ndarray:
  """(D,) int class of each input (index into CLASSES) from a run's training inputs.

  x_train: (n, D) decoded training inputs; the first n_original columns are pixels, then
  n_uniform uniform-noise columns, then the permuted ones.
  """
  frequency = (x_train[:, :n_original] != 0).mean(0)
  classes = np.full(x_train.shape[1], CLASSES.index('permuted'))
  classes[n_original:n_original + n_uniform] = CLASSES.index('uniform')
  classes[:n_original] = np.where(
      frequency == 0, CLASSES.index('blank'),
      np.where(frequency >= COMMON_FRACTION, CLASSES.index('common'), CLASSES.index('rare')))
  return classes


# ----------------------------------------------------------------------------- measures


def selected(kernel: np.ndarray, criterion: str) -> np.ndarray:
  """(D,) bool: inputs whose first-layer row (D, units) is not (near) zero."""
  if criterion == 'exact':
    return np.any(kernel != 0, axis=1)
  return np.max(np.abs(kernel), axis=1) > NEAR_ZERO


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
  """P(a positive score exceeds a negative one), ties counted half (Mann-Whitney)."""
  if len(positive) == 0 or len(negative) == 0:
    return math.nan
  p = np.asarray(positive, np.float64)[:, None]
  n = np.asarray(negative, np.float64)[None, :]
  return float(np.mean((p > n) + 0.5 * (p == n)))


def selection_stats(kernel: np.ndarray, classes: np.ndarray) -> dict[str, Any]:
  """Precision, recall, kept shares and ranking of one run's first-layer kernel.

  kernel: (D, units); classes: (D,) from `input_classes`. Per criterion c in CRITERIA:
  'c_selected' (count over all inputs), 'c_precision' (NaN if no informative or noise
  input is selected), 'c_recall', 'c_kept_<class>' (share of each class selected; NaN
  for an empty class). Also 'auroc' (informative vs noise row norms), 'auroc_matched'
  (common pixels vs permuted noise: equal distributions), 'norm_<class>' (mean row
  norm), 'zero_fraction' (first-layer weights exactly 0) and 'counts' per class.
  """
  w = np.asarray(kernel, np.float64)  # float64: tiny norms must not square to 0.
  norms = np.linalg.norm(w, axis=1)
  is_ = {name: classes == i for i, name in enumerate(CLASSES)}
  informative = is_['common'] | is_['rare']
  noise = is_['uniform'] | is_['permuted']
  out: dict[str, Any] = {'counts': {name: int(m.sum()) for name, m in is_.items()},
                         'zero_fraction': float(np.mean(w == 0))}
  for c in CRITERIA:
    sel = selected(w, c)
    tp, fp = int(np.sum(sel & informative)), int(np.sum(sel & noise))
    out[f'{c}_selected'] = int(sel.sum())
    out[f'{c}_precision'] = tp / (tp + fp) if tp + fp else math.nan
    out[f'{c}_recall'] = tp / int(informative.sum()) if informative.any() else math.nan
    for name, m in is_.items():
      out[f'{c}_kept_{name}'] = float(sel[m].mean()) if m.any() else math.nan
    out[f'{c}_kept_informative'] = float(sel[informative].mean())
    out[f'{c}_kept_noise'] = float(sel[noise].mean())
  out['auroc'] = auroc(norms[informative], norms[noise])
  out['auroc_matched'] = auroc(norms[is_['common']], norms[is_['permuted']])
  for name, m in is_.items():
    out[f'norm_{name}'] = float(norms[m].mean()) if m.any() else math.nan
  return out


# ----------------------------------------------------------------------------- training


def train_arm(arm: Arm, s: Settings, base: ml_collections.ConfigDict, splits: Sequence[Any],
              classes: Sequence[np.ndarray], log: Callable[[str], None]
              ) -> list[dict[str, Any]]:
  """Trains one arm's strengths x seeds as one vmapped RunGroup; one record per run
  (validation and test numbers, `selection_stats`, and the row norms)."""
  runs, keys = [], []
  for seed in range(s.seeds):
    for strength in arm.strengths:
      config = common.override(base, optimizer__name=arm.optimizer,
                               optimizer__learning_rate=arm.learning_rate,
                               optimizer__l1_prox=strength, data__split_seed=seed)
      runs.append(train.Run(config, seed, splits[seed]))
      keys.append((strength, seed))
  group = train.RunGroup(runs, penalty_terms=(), include=('l1_prox',))
  log(f'{arm.name}: {len(runs)} runs as one program')
  records = []
  for (strength, seed), (record, _, variables) in zip(keys, group.fit()):
    kernel = np.asarray(variables['params']['Dense_0']['kernel'])
    records.append({
        'arm': arm.name, 'strength': strength, 'seed': seed,
        **{k: record[k] for k in ('val_accuracy', 'val_loss', 'test_accuracy', 'test_loss',
                                  'train_accuracy')},
        'diverged': bool(record['diverged']),
        **selection_stats(kernel, classes[seed]),
        'row_norms': np.linalg.norm(kernel.astype(np.float64), axis=1)})
  return records


# ----------------------------------------------------------------------------- figures


def _mean_over_seeds(records, arm, strengths, key):
  return np.array([np.nanmean([r[key] for r in records
                               if r['arm'] == arm and r['strength'] == st])
                   for st in strengths])


def paths_figure(out: common.Outputs, s: Settings, records: Sequence[Mapping[str, Any]],
                 chosen: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> str:
  """Per arm: kept shares per input class, precision / recall, and validation accuracy
  along the strength path (0 drawn at the left edge), chosen strengths marked."""
  fig, axes = common.new_figure(len(s.arms), 3, width=4.4, height=3.3)
  styles = {'common': ('tab:green', 'common pixels'), 'rare': ('tab:olive', 'rare pixels'),
            'uniform': ('tab:orange', 'uniform noise'), 'permuted': ('tab:red',
                                                                     'permuted pixels')}
  for row, arm in enumerate(s.arms):
    # Strength 0 cannot sit on a log axis: draw it half a grid step left of the first.
    xs = np.array(arm.strengths, np.float64)
    xs[0] = xs[1] ** 2 / xs[2] if len(xs) > 2 else xs[1] / 10
    x_of = dict(zip(arm.strengths, xs))
    ax = axes[row, 0]
    for name, (color, label) in styles.items():
      for c, ls in zip(CRITERIA, ('-', ':')):
        ax.plot(xs, 100 * _mean_over_seeds(records, arm.name, arm.strengths,
                                           f'{c}_kept_{name}'),
                color=color, ls=ls, marker='o' if c == 'exact' else None, ms=3,
                label=label if c == 'exact' else None)
    ax.set_ylabel('inputs selected (%)')
    ax.set_title(f'{arm.label}: selected by class\n(solid: row not exactly 0; dotted: '
                 f'max |w| > {NEAR_ZERO:g})', fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    ax = axes[row, 1]
    for c, ls in zip(CRITERIA, ('-', ':')):
      for key, color in (('precision', 'black'), ('recall', 'tab:blue')):
        ax.plot(xs, _mean_over_seeds(records, arm.name, arm.strengths, f'{c}_{key}'),
                color=color, ls=ls, marker='o' if c == 'exact' else None, ms=3,
                label=f'{key} ({c})')
    ax.plot(xs, _mean_over_seeds(records, arm.name, arm.strengths, 'auroc'), color='gray',
            ls='--', label='AUROC of row norms')
    ax.set_ylim(-0.02, 1.02)
    ax.set_title('precision / recall of the selected inputs', fontsize=8)
    ax.legend(fontsize=6.5, frameon=False)
    ax = axes[row, 2]
    for key, color in (('val_accuracy', 'tab:blue'), ('test_accuracy', 'tab:gray')):
      ax.plot(xs, 100 * _mean_over_seeds(records, arm.name, arm.strengths, key), color=color,
              marker='o', ms=3, label=key.replace('_', ' '))
    ax.set_ylabel('accuracy (%)')
    ax.set_title('accuracy (test shown, never used to choose)', fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    for ax in axes[row]:
      ax.set_xscale('log')
      ax.set_xticks(xs, ['0'] + [f'{v:g}' for v in arm.strengths[1:]], fontsize=6.5,
                    rotation=45)
      ax.minorticks_off()
      ax.set_xlabel('optimizer.l1_prox')
      for r in chosen[arm.name].values():
        ax.axvline(x_of[r['strength']], color=arm.color, alpha=0.15, lw=4)
  fig.suptitle('Along the L1 strength path (means over seeds; shaded: each seed\'s '
               'validation-chosen strength)', fontsize=10)
  return out.figure(fig, PATHS_FIGURE,
                    'Share of each input class whose first-layer row survives, precision '
                    'and recall, and accuracy along the L1 path of each optimizer.')


def norms_figure(out: common.Outputs, s: Settings, records: Sequence[Mapping[str, Any]],
                 chosen: Mapping[str, Mapping[int, Mapping[str, Any]]],
                 classes: np.ndarray, frequency: np.ndarray) -> str:
  """Seed 0: each input's row norm against how often it is non-zero in training, with
  no L1 and at the chosen strength, per arm."""
  fig, axes = common.new_figure(len(s.arms), 2, width=4.6, height=3.4)
  colors = {'common': 'tab:green', 'rare': 'tab:olive', 'blank': 'lightgray',
            'uniform': 'tab:orange', 'permuted': 'tab:red'}
  for row, arm in enumerate(s.arms):
    pick = {'no L1': 0.0, 'chosen': chosen[arm.name][0]['strength']}
    for col, (title, strength) in enumerate(pick.items()):
      ax = axes[row, col]
      r = next(q for q in records if q['arm'] == arm.name and q['seed'] == 0
               and q['strength'] == strength)
      norms = np.asarray(r['row_norms'])
      floor = 1e-9  # Exact zeros drawn at the bottom of the log axis.
      for i, name in enumerate(CLASSES):
        m = classes == i
        if m.any():
          ax.scatter(frequency[m], np.maximum(norms[m], floor), s=5, color=colors[name],
                     alpha=0.6, label=name, lw=0)
      ax.set_yscale('log')
      ax.set_ylim(floor / 2, None)
      ax.axhline(NEAR_ZERO, color='gray', ls=':', lw=0.8)
      ax.set_xlabel('share of training images where the input is non-zero')
      ax.set_ylabel('first-layer row norm (0 drawn at 1e-9)')
      ax.set_title(f'{arm.label}, l1_prox {strength:g} ({title}), seed 0\n'
                   f"exact-zero rows: {100 * np.mean(norms == 0):.1f}%", fontsize=8)
      if row == 0 and col == 0:
        ax.legend(fontsize=7, frameon=False, markerscale=2)
  return out.figure(fig, NORMS_FIGURE,
                    'Row norm of every input against its ink frequency (seed 0): which '
                    'inputs L1 shrinks, by class.')


# ----------------------------------------------------------------------------- run


def _claim_verdict(row: Mapping[str, Any]) -> str:
  """A 'zeroes noise first' difference (positive = as claimed) -> verdict."""
  if not math.isfinite(row['diff_mean']) or row['diff_mean'] <= 0:
    return 'does not hold'
  return 'holds' if row['p_adjusted'] < ALPHA else 'not resolved'


def run(out_dir: str, mnist_dir: str, smoke: bool, seeds: int,
        log: Callable[[str], None] = common.log) -> dict[str, Any]:
  """Builds the noisy table, trains both arms, writes `out_dir`."""
  out = common.Outputs(out_dir, 'Does L1 select features? Noise inputs vs informative pixels')
  s = make_settings(smoke, seeds)
  c = schema.default_config()
  c.data.name = s.dataset
  c.data.dir = mnist_dir if s.dataset == 'mnist' else ''
  source = load_source(c.data)
  n_original = int(np.prod(source.x_pool.shape[1:]))
  pool, test, sources = noisy_table(source.x_pool, source.x_test, s.n_uniform,
                                    s.n_permuted, np.random.default_rng(0))
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'noisy.npz')
    np.savez(path, x_train=pool, y_train=source.y_pool, x_test=test, y_test=source.y_test)
    c.data.name = f'npz:{path}'
    c.data.dir = ''
    raw = load_source(c.data)  # Read into memory: the file can go.
  del pool, test, source
  c.data.train_size = s.train_size
  c.data.validation_fraction = s.validation_fraction
  c.model.widths = s.widths
  c.train.epochs = s.epochs
  c.train.eval_batch_size = 500  # Memory only: many vmapped lanes evaluate at once.
  c.early_stopping.enabled = False
  splits = [split(raw, common.override(c, data__split_seed=seed).data)
            for seed in range(s.seeds)]
  classes = [input_classes(d.x_train, n_original, s.n_uniform) for d in splits]
  records = []
  for arm in s.arms:
    records += train_arm(arm, s, c, splits, classes, log)

  # Per seed, the strength chosen on validation; strength 0 is the no-L1 reference.
  chosen = {arm.name: {} for arm in s.arms}
  reference = {arm.name: {} for arm in s.arms}
  for arm in s.arms:
    for seed in range(s.seeds):
      mine = [r for r in records if r['arm'] == arm.name and r['seed'] == seed]
      chosen[arm.name][seed] = mine[tuning.choose(mine, *SELECT)]
      reference[arm.name][seed] = mine[0]
  # Family 1: at the chosen strength, are noise inputs zeroed before informative ones?
  values, pairs = {}, []
  for arm in s.arms:
    ch, ref = chosen[arm.name], reference[arm.name]
    values[f'{arm.name}:kept_informative'] = {k: r['exact_kept_informative'] for k, r in ch.items()}
    values[f'{arm.name}:kept_noise'] = {k: r['exact_kept_noise'] for k, r in ch.items()}
    values[f'{arm.name}:auroc_chosen'] = {k: r['auroc'] for k, r in ch.items()}
    values[f'{arm.name}:auroc_none'] = {k: r['auroc'] for k, r in ref.items()}
    pairs += [(f'{arm.name}:kept_informative', f'{arm.name}:kept_noise'),
              (f'{arm.name}:auroc_chosen', f'{arm.name}:auroc_none')]
  selection_rows = paired_table(values, pairs)
  # Family 2: test accuracy at the chosen strength vs no L1.
  acc = {}
  for arm in s.arms:
    acc[f'{arm.name}:chosen'] = {k: r['test_accuracy'] for k, r in chosen[arm.name].items()}
    acc[f'{arm.name}:none'] = {k: r['test_accuracy'] for k, r in reference[arm.name].items()}
  accuracy_rows = paired_table(acc, [(f'{a.name}:chosen', f'{a.name}:none') for a in s.arms])
  verdicts = {arm.name: _claim_verdict(selection_rows[2 * i])
              for i, arm in enumerate(s.arms)}

  frequency = (splits[0].x_train != 0).mean(0)
  fig_paths = paths_figure(out, s, records, chosen)
  fig_norms = norms_figure(out, s, records, chosen, classes[0], frequency)

  # ---------------------------------------------------------------- report.md
  counts = records[0]['counts']
  path_rows = []
  for arm in s.arms:
    for st in arm.strengths:
      rs = [r for r in records if r['arm'] == arm.name and r['strength'] == st]
      n_chosen = sum(ch['strength'] == st for ch in chosen[arm.name].values())
      path_rows.append([
          arm.label, f'{st:g}', f'{n_chosen}/{s.seeds}',
          common.pm([r['val_accuracy'] for r in rs]),
          common.pm([r['exact_kept_common'] for r in rs], digits=1),
          common.pm([r['exact_kept_rare'] for r in rs], digits=1),
          common.pm([r['exact_kept_uniform'] for r in rs], digits=1),
          common.pm([r['exact_kept_permuted'] for r in rs], digits=1),
          _nan_pm([r['exact_precision'] for r in rs], 1.0),
          common.pm([r['exact_recall'] for r in rs], scale=1.0),
          _nan_pm([r['near_precision'] for r in rs], 1.0),
          common.pm([r['near_recall'] for r in rs], scale=1.0),
          common.pm([r['auroc'] for r in rs], scale=1.0)])
  chosen_rows = []
  for arm in s.arms:
    ch = list(chosen[arm.name].values())
    chosen_rows.append([
        arm.label, ', '.join(f"{r['strength']:g}" for r in ch),
        common.pm([r['test_accuracy'] for r in ch]),
        _nan_pm([r['exact_precision'] for r in ch], 1.0),
        common.pm([r['exact_recall'] for r in ch], scale=1.0),
        common.pm([r['exact_kept_noise'] for r in ch], digits=1),
        _nan_pm([r['near_precision'] for r in ch], 1.0),
        common.pm([r['near_recall'] for r in ch], scale=1.0),
        common.pm([r['near_kept_noise'] for r in ch], digits=1),
        common.pm([r['auroc'] for r in ch], scale=1.0),
        common.pm([r['auroc_matched'] for r in ch], scale=1.0)])

  def test_rows(rows, scale, unit):
    return [[f"{r['a']} - {r['b']}", f"{scale * r['diff_mean']:+.3f}{unit} "
             f"[{scale * r['ci_low']:+.3f}, {scale * r['ci_high']:+.3f}]",
             f"{r['p_value']:.3g} ({r['p_adjusted']:.3g})"] for r in rows]

  out.add(
      '## Setting',
      f"{s.dataset}, {splits[0].num_train:,} training and {splits[0].num_val:,} validation "
      f"images per seed (each seed its own split), {len(splits[0].y_test):,} test images. "
      f"{n_original} pixels + {s.n_uniform} uniform-noise + {s.n_permuted} permuted-pixel "
      f"inputs. MLP {s.widths}, batch 32, {s.epochs} epochs, constant learning rate, "
      f"final weights, {s.seeds} seeds; strength chosen per seed on {SELECT[0]}. Inputs of "
      f"seed 0's training set: {counts['common']} common, {counts['rare']} rare, "
      f"{counts['blank']} blank pixels. "
      + ' '.join(f'{a.label}: lr {a.learning_rate:g}, l1_prox '
                 f"{', '.join(f'{v:g}' for v in a.strengths)}." for a in s.arms),
      '## Along the strength path (means ± sd over seeds)',
      'Kept = share of the class whose first-layer row is not exactly 0 (%); precision and '
      f'recall with exact zeros and with max |w| > {NEAR_ZERO:g} ("near"); AUROC of row '
      'norms, informative vs noise.',
      common.markdown_table(
          ['arm', 'l1_prox', 'chosen', 'val acc %', 'kept common %', 'kept rare %',
           'kept uniform noise %', 'kept permuted noise %', 'precision', 'recall',
           'precision (near)', 'recall (near)', 'AUROC'], path_rows),
      '## At the validation-chosen strength',
      common.markdown_table(
          ['arm', 'chosen l1_prox per seed', 'test acc %', 'precision', 'recall',
           'noise kept %', 'precision (near)', 'recall (near)', 'noise kept (near) %',
           'AUROC', 'AUROC common vs permuted'], chosen_rows),
      'Does L1 zero noise inputs before informative ones? Paired by seed, Holm over the '
      'four rows (kept = not exactly 0, as shares):',
      common.markdown_table(['comparison', 'difference (95% CI)', 'p sign-flip (Holm)'],
                            test_rows(selection_rows, 1.0, '')),
      'Test accuracy at the chosen strength vs no L1 (Holm over the two rows):',
      common.markdown_table(['comparison', 'difference pp (95% CI)', 'p sign-flip (Holm)'],
                            test_rows(accuracy_rows, 100.0, '')),
      f"With {s.seeds} seeds the sign-flip p cannot go below "
      f"{stats.min_attainable_p(s.seeds):.3g}. Verdict ('noise is zeroed before informative "
      "inputs at the chosen strength': holds if informative kept minus noise kept is "
      f"positive with Holm p < {ALPHA}, does not hold if it is <= 0): "
      + '; '.join(f'{a.label}: {verdicts[a.name]}' for a in s.arms) + '.',
      fig_paths, fig_norms)
  for r in records:
    if r['seed'] != 0:
      del r['row_norms']  # Seed 0's are kept (the figure); the rest are summarized.
  out.results.update({
      'settings': dataclasses.asdict(s) | {'select': list(SELECT), 'near_zero': NEAR_ZERO,
                                           'common_fraction': COMMON_FRACTION,
                                           'n_original': n_original},
      'permuted_sources': sources, 'classes_seed0': classes[0],
      'records': records,
      'chosen_strength': {a: {str(k): r['strength'] for k, r in ch.items()}
                          for a, ch in chosen.items()},
      'selection_tests': selection_rows, 'accuracy_tests': accuracy_rows,
      'verdicts': verdicts,
  })
  out.write()
  return out.results


def _nan_pm(values: Sequence[float], scale: float = 100.0) -> str:
  """common.pm over the finite values ('-' if none, e.g. nothing selected)."""
  finite = [v for v in values if math.isfinite(v)]
  return common.pm(finite, scale=scale) if finite else '-'


if __name__ == '__main__':
  common.script_main(run, default_seeds=8)
