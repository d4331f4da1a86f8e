r"""Adam + L2 vs AdamW: does decoupling free the best decay strength from the learning rate?

  python -m experiments.adamw --out=/tmp/adamw [--mnist_dir=DIR] [--seeds=6] [--smoke]
  python -m experiments.adamw --out=/tmp/adamw2 --reanalyze=/tmp/adamw/results.json

Loshchilov & Hutter (2019), "Decoupled Weight Decay Regularization", claim for Adam that
(1) with decoupled weight decay the best strength depends much less on the learning rate
than the best L2 strength does (the good region of the learning-rate x strength plane is
axis-aligned instead of diagonal), and (2) tuned AdamW generalizes better than tuned
Adam + L2. Three forms are trained:

  Adam + L2  penalty.l2:             loss + (l2 / 2) * sum w^2; the gradient l2 * w goes
                                     through Adam's moment estimates (coupled).
  AdamW      optimizer.weight_decay: after Adam's scaling, w -= lr_t * wd * w
                                     (decoupled; the optax and PyTorch convention).
  Adam       no regularizer: the reference both should beat (the weight_decay = 0
             lanes of the AdamW program: the transform is an exact no-op at 0).

Units. The paper's Algorithm 2 decays by eta_t * lambda, eta_t being the schedule
multiplier without the base learning rate, so the paper's lambda is lr * wd here (at the
schedule's peak). "The best strength does not move with the learning rate" means a
different thing in each unit, so the AdamW ridge is reported in both.

Setting: the first 5,000 images of an MNIST split (each seed its own split,
data.split_seed = seed, so intervals include split variance), 5% of the pool (3,000
images) for validation, MLP 128, batch 32, 10 epochs with cosine learning-rate decay,
final weights (no early stopping). Grid: 5 learning rates x 6 strengths per form, each
form ONE vmapped `train.RunGroup` over learning rate x strength x seed (AdamW's with
weight_decay = 0 added: plain Adam). Every choice reads validation accuracy only; each
run's test set is evaluated once, at its end, and the report reads it only for the runs
chosen on validation.

Measured:
  * Heatmaps of mean validation accuracy over (learning rate, strength), per form.
  * The ridge of optima: per learning rate, the strength with the best mean validation
    accuracy (ties -> the weaker); its spread across learning rates (log10 range, in
    decades) and its slope d log10(strength) / d log10(lr).
  * Interaction share: the part of the grid's variance in validation accuracy that the
    additive model "learning-rate effect + strength effect" leaves unexplained (0 = the
    best strength is the same at every learning rate).
  * The same ridge and interaction statistics per seed, paired by seed (Adam + L2 minus
    AdamW), sign-flip p, Holm over the family.
  * Tuned vs tuned: per seed, each form's best (lr, strength) on validation, and plain
    Adam's best lr; paired test-accuracy differences, 95% t-intervals, sign-flip p, Holm
    over the three comparisons.

Outputs in --out: results.json (every run's numbers), report.md, adamw_heatmaps.png,
adamw_tuned.png. --reanalyze rewrites them from a finished run's results.json without
training (for a change in the analysis only; the test numbers it reads were measured
once, at each run's end).
"""

import dataclasses
import json
import math
from typing import Any, Callable, Mapping, Sequence

from absl import flags
from matplotlib import patches
from matplotlib import ticker
import ml_collections
import numpy as np

from experiments import common
from regjax import schema
from regjax import stats
from regjax import train
from regjax import tuning
from regjax.data import load_source, split
from regjax.errors import ConfigError

HEATMAP_FIGURE = 'adamw_heatmaps.png'
TUNED_FIGURE = 'adamw_tuned.png'
SELECT = ('val_accuracy', 'max')  # The brief's criterion: best validation accuracy.
ALPHA = 0.05  # Family-wise level of the Holm-adjusted verdicts.
# Form -> (label, dotted config field of its strength, colour). None = no regularizer.
FORMS = {
    'adam_l2': ('Adam + L2 (penalty.l2)', 'penalty.l2', 'tab:blue'),
    'adamw': ('AdamW (optimizer.weight_decay)', 'optimizer.weight_decay', 'tab:red'),
    'adam': ('Adam (no regularizer)', None, 'gray'),
}


@dataclasses.dataclass(frozen=True)
class Settings:
  """Sizes of a run (the full MNIST run or the smoke run on digits)."""
  dataset: str
  train_size: int  # 0 = the whole training split.
  validation_fraction: float
  widths: tuple[int, ...]
  epochs: int
  learning_rates: tuple[float, ...]
  strengths: Mapping[str, tuple[float, ...]]  # Per regularized form.
  seeds: int


def make_settings(smoke: bool, seeds: int) -> Settings:
  """The full MNIST grid, or a seconds-long one on digits (tests).

  The grids were placed with one seed of a 10-epoch probe, reading validation accuracy
  only: each form's range runs from no visible effect to clearly too strong, and the
  learning rates from ones that do not quite fit the training set to the largest that
  still trains.
  """
  if seeds < 2:
    raise ConfigError('seeds', seeds, 'must be >= 2 (paired comparisons)')
  if smoke:
    return Settings(dataset='digits', train_size=0, validation_fraction=0.2, widths=(16,),
                    epochs=2, learning_rates=(3e-3, 3e-2),
                    strengths={'adam_l2': (1e-4, 1e-2), 'adamw': (1e-2, 1.0)}, seeds=seeds)
  return Settings(
      dataset='mnist', train_size=5000, validation_fraction=0.05, widths=(128,),
      epochs=10, learning_rates=(2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2),
      strengths={'adam_l2': (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3),
                 'adamw': (3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)},
      seeds=seeds)


def make_config(s: Settings, mnist_dir: str) -> ml_collections.ConfigDict:
  """Adam, MLP, batch 32, cosine decay, fixed epochs, final weights; no regularizer."""
  c = schema.default_config()
  c.data.name = s.dataset
  c.data.dir = mnist_dir if s.dataset == 'mnist' else ''
  c.data.train_size = s.train_size
  c.data.validation_fraction = s.validation_fraction
  c.model.widths = s.widths
  c.optimizer.name = 'adam'
  c.optimizer.schedule = 'cosine'
  c.train.epochs = s.epochs
  # Memory only (no effect on results): 180 vmapped lanes each evaluate a chunk at once.
  c.train.eval_batch_size = 500
  c.early_stopping.enabled = False
  return c


# ----------------------------------------------------------------------------- analysis


def grid_matrix(runs: Sequence[Mapping[str, Any]], learning_rates: Sequence[float],
                strengths: Sequence[float], key: str = 'val_accuracy',
                seed: int | None = None) -> np.ndarray:
  """(n_lr, n_strength) mean of `key` over the seeds (or of one `seed`) of one form's runs.

  A diverged run counts as NaN; a cell whose runs all diverged is NaN.
  """
  out = np.full((len(learning_rates), len(strengths)), np.nan)
  for i, lr in enumerate(learning_rates):
    for j, s in enumerate(strengths):
      values = [math.nan if r['diverged'] else r[key] for r in runs
                if r['lr'] == lr and r['strength'] == s and (seed is None or r['seed'] == seed)]
      finite = [v for v in values if math.isfinite(v)]
      out[i, j] = float(np.mean(finite)) if finite else np.nan
  return out


# Means over seeds of equal accuracies (multiples of 1 / n_val) can differ in their last
# bits, by the order of summation; values this close count as ties.
TIE_DECIMALS = 10


def ridge(matrix: np.ndarray, mode: str = 'max') -> np.ndarray:
  """Per row (learning rate), the column (strength) index of the best value.

  Ties (equal to TIE_DECIMALS decimals) go to the first column (the weaker strength);
  NaN never wins (an all-NaN row gives column 0).
  """
  sign = 1.0 if mode == 'max' else -1.0
  scores = np.where(np.isfinite(matrix), np.round(sign * matrix, TIE_DECIMALS), -np.inf)
  return np.argmax(scores, axis=1)  # argmax returns the first maximum.


def log_range(values: Sequence[float]) -> float:
  """log10(max / min) of positive values: how many decades they span."""
  v = np.asarray(values, dtype=np.float64)
  return float(np.log10(v.max()) - np.log10(v.min()))


def log_slope(x: Sequence[float], y: Sequence[float]) -> float:
  """Least-squares slope of log10(y) on log10(x) (0 when y is constant)."""
  lx, ly = np.log10(np.asarray(x, np.float64)), np.log10(np.asarray(y, np.float64))
  lx = lx - lx.mean()
  return float(np.sum(lx * (ly - ly.mean())) / np.sum(lx * lx))


def interaction_share(matrix: np.ndarray) -> float:
  """Share of a two-way grid's variance that row + column main effects leave unexplained.

  Fits m_ij ~ a_i + b_j by least squares (row and column means of a complete grid) and
  returns residual SS / total SS about the grand mean, in [0, 1]: 0 when the grid is
  additive, so that every row has its best column in the same place. NaN for an
  incomplete or constant grid.
  """
  m = np.asarray(matrix, np.float64)
  if not np.all(np.isfinite(m)):
    return math.nan
  centred = m - m.mean()
  total = float(np.sum(centred ** 2))
  if total == 0.0:
    return math.nan
  fitted = m.mean(1, keepdims=True) + m.mean(0, keepdims=True) - m.mean()
  return float(np.sum((m - fitted) ** 2) / total)


def ridge_stats(matrix: np.ndarray, learning_rates: Sequence[float],
                strengths: Sequence[float], scale_by_lr: bool = False) -> dict[str, Any]:
  """The ridge of optima of one (lr x strength) grid of validation accuracy.

  scale_by_lr: express the best strength as lr * strength (the paper's lambda for
  decoupled decay) before measuring its spread.
  Returns {'best_index', 'best' (per lr), 'log_range' (decades), 'slope', 'on_edge'
  (learning rates whose best strength is the grid's smallest or largest)}.
  """
  idx = ridge(matrix)
  best = np.asarray(strengths, np.float64)[idx]
  if scale_by_lr:
    best = best * np.asarray(learning_rates, np.float64)
  return {'best_index': idx.tolist(), 'best': best.tolist(), 'log_range': log_range(best),
          'slope': log_slope(learning_rates, best),
          'on_edge': int(np.sum((idx == 0) | (idx == len(strengths) - 1)))}


def paired_table(values: Mapping[str, Mapping[int, float]],
                 pairs: Sequence[tuple[str, str]], confidence: float = 0.95
                 ) -> list[dict[str, Any]]:
  """Paired comparisons of per-seed values, one family: Holm over all its rows.

  values: {name: {seed: value}}; pairs: (a, b) rows of a - b, paired by the seeds both
  have (non-finite values are left out). Each row: 'a', 'b', 'n', 'diff_mean',
  'ci_low', 'ci_high' (t-interval), 'p_value' (exact sign-flip; >= 2 / 2^n),
  'p_adjusted' (Holm over the rows), 'min_p' (the smallest p n pairs allow).
  """
  rows = []
  for a, b in pairs:
    seeds = sorted(s for s in values[a] if s in values[b]
                   and math.isfinite(values[a][s]) and math.isfinite(values[b][s]))
    d = np.array([values[a][s] - values[b][s] for s in seeds], np.float64)
    mean, low, high = stats.t_interval(d, confidence)
    rows.append({'a': a, 'b': b, 'n': len(seeds), 'diff_mean': mean, 'ci_low': low,
                 'ci_high': high,
                 'p_value': stats.sign_flip_test(d) if len(d) >= 2 else math.nan,
                 'min_p': stats.min_attainable_p(len(d)), 'diffs': d.tolist()})
  for row, p in zip(rows, stats.holm([r['p_value'] for r in rows])):
    row['p_adjusted'] = float(p)
  return rows


def verdict(row: Mapping[str, Any], expected_sign: int) -> str:
  """'holds' (Holm p < ALPHA, expected sign), 'does not hold' (significant the other
  way) or 'not resolved' (not significant after Holm)."""
  if not math.isfinite(row['p_adjusted']) or row['p_adjusted'] >= ALPHA:
    return 'not resolved'
  return 'holds' if np.sign(row['diff_mean']) == expected_sign else 'does not hold'


def choose_tuned(runs: Sequence[Mapping[str, Any]], seeds: int) -> dict[int, dict[str, Any]]:
  """Per seed, the run of one form with the best validation accuracy (tuning.choose)."""
  out = {}
  for seed in range(seeds):
    mine = [r for r in runs if r['seed'] == seed]
    out[seed] = mine[tuning.choose(mine, *SELECT)]
  return out


# ----------------------------------------------------------------------------- training


def train_form(form: str, s: Settings, base: ml_collections.ConfigDict, splits: Sequence[Any],
               log: Callable[[str], None]) -> tuple[list[dict[str, Any]], float]:
  """Trains one regularized form's whole grid x seeds as one vmapped RunGroup.

  The AdamW group also trains weight_decay = 0, plain Adam: the decoupled transform is an
  exact no-op at 0, so these lanes are plain Adam runs, and sharing the program saves a
  compilation. Returns one record per run ({'form', 'lr', 'strength', 'seed',
  'val_accuracy', 'val_loss', 'test_accuracy', 'test_loss', 'train_accuracy',
  'diverged', 'weight_l2'}; the plain Adam runs have form 'adam') and the group's
  compile seconds.
  """
  field = FORMS[form][1]
  strengths = s.strengths[form] + ((0.0,) if form == 'adamw' else ())
  runs, keys = [], []
  for seed in range(s.seeds):
    for lr in s.learning_rates:
      for strength in strengths:
        overrides = {'optimizer__learning_rate': lr, 'data__split_seed': seed,
                     field.replace('.', '__'): strength}
        runs.append(train.Run(common.override(base, **overrides), seed, splits[seed]))
        keys.append((lr, strength, seed))
  group = train.RunGroup(runs, penalty_terms=('l2',) if form == 'adam_l2' else (),
                         include=('weight_decay',) if form == 'adamw' else ())
  log(f'{form}: {len(runs)} runs as one program ({group.describe_placement()})')
  results = group.fit()
  records = []
  for (lr, strength, seed), (record, _, _) in zip(keys, results):
    records.append({
        'form': form if strength > 0 else 'adam', 'lr': lr, 'strength': strength,
        'seed': seed,
        **{k: record[k] for k in ('val_accuracy', 'val_loss', 'test_accuracy', 'test_loss',
                                  'train_accuracy', 'weight_l2')},
        'diverged': bool(record['diverged'])})
  return records, group.compile_seconds


# ----------------------------------------------------------------------------- figures


def _heatmap(ax, matrix: np.ndarray, s: Settings, strengths: Sequence[float], title: str,
             vmin: float, vmax: float, chosen: Sequence[tuple[float, float]]):
  """One form's mean validation accuracy (%) with its ridge (white squares) and the
  per-seed tuned choices (black dots, jittered)."""
  im = ax.imshow(100 * matrix.T, origin='lower', cmap='viridis', vmin=vmin, vmax=vmax,
                 aspect='auto')
  best = np.nanmax(matrix)
  for i in range(matrix.shape[0]):
    for j in range(matrix.shape[1]):
      v = matrix[i, j]
      if np.isfinite(v):
        ax.text(i, j, f'{100 * v:.2f}', ha='center', va='center', fontsize=6.5,
                color='white' if 100 * v < (vmin + vmax) / 2 else 'black',
                fontweight='bold' if v == best else 'normal')
  for i, j in enumerate(ridge(matrix)):
    ax.add_patch(patches.Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False,
                                              ec='white', lw=2))
  rng = np.random.default_rng(0)
  lr_index = {lr: i for i, lr in enumerate(s.learning_rates)}
  s_index = {v: j for j, v in enumerate(strengths)}
  for lr, strength in chosen:
    ax.plot(lr_index[lr] + rng.uniform(-0.3, 0.3), s_index[strength] + rng.uniform(-0.3, 0.3),
            'o', color='black', ms=3.5, mec='white', mew=0.5)
  ax.set_xticks(range(len(s.learning_rates)), [f'{v:g}' for v in s.learning_rates],
                fontsize=7)
  ax.set_yticks(range(len(strengths)), [f'{v:g}' for v in strengths], fontsize=7)
  ax.set_xlabel('peak learning rate')
  ax.set_title(title, fontsize=9)
  ax.grid(False)
  return im


def heatmap_figure(out: common.Outputs, s: Settings, matrices: Mapping[str, np.ndarray],
                   seed_ridges: Mapping[str, list[list[float]]],
                   ridges: Mapping[str, Mapping[str, Any]],
                   tuned: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> str:
  """Two validation-accuracy heatmaps side by side, and the ridges of optima."""
  fig, axes = common.new_figure(1, 3, width=4.6, height=4.0)
  finite = np.concatenate([100 * m[np.isfinite(m)] for m in matrices.values()])
  vmax = float(finite.max())
  vmin = max(float(finite.min()), vmax - 3.0)  # Clip the collapsed corners: 3 pp of colour.
  for ax, form in zip(axes[0, :2], ('adam_l2', 'adamw')):
    label, field, _ = FORMS[form]
    im = _heatmap(ax, matrices[form], s, s.strengths[form], label, vmin, vmax,
                  [(r['lr'], r['strength']) for r in tuned[form].values()])
    ax.set_ylabel(f'{field}')
  fig.colorbar(im, ax=axes[0, :2], shrink=0.8, label='mean validation accuracy (%)')
  ax = axes[0, 2]
  lines = (('adam_l2', 'Adam + L2: l2', 'tab:blue', '-'),
           ('adamw', 'AdamW: wd (optax units)', 'tab:red', '-'),
           ('adamw_paper', 'AdamW: lr x wd (paper units)', 'tab:red', '--'))
  for key, label, color, style in lines:
    best = np.log10(ridges[key]['best'])
    ax.plot(s.learning_rates, best - best.mean(), color=color, ls=style, marker='o', lw=2,
            label=f"{label}: spread {ridges[key]['log_range']:.2f} dec")
    for per_seed in seed_ridges[key]:
      b = np.log10(per_seed)
      ax.plot(s.learning_rates, b - b.mean(), color=color, ls=style, lw=0.6, alpha=0.3)
  ax.set_xscale('log')
  ax.set_xticks(s.learning_rates, [f'{v:g}' for v in s.learning_rates], fontsize=7)
  ax.xaxis.set_minor_locator(ticker.NullLocator())
  ax.set_xlabel('peak learning rate')
  ax.set_ylabel('log10(best strength), centred (decades)')
  ax.set_title('ridge of optima (thick: mean grid; thin: each seed)', fontsize=9)
  ax.legend(fontsize=7, frameon=True, loc='best')
  fig.suptitle('Validation accuracy over learning rate x strength (mean over seeds). White '
               'squares: best strength per learning rate; dots: each seed\'s tuned choice',
               fontsize=9)
  return out.figure(fig, HEATMAP_FIGURE,
                    'Mean validation accuracy of Adam + L2 (left) and AdamW (middle) over '
                    f'the learning-rate x strength grid (colours clipped below {vmin:.1f}%), '
                    'and the ridge of best strengths, each centred on its mean (right).')


def tuned_figure(out: common.Outputs, tuned: Mapping[str, Mapping[int, Mapping[str, Any]]],
                 seeds: int) -> str:
  """Per-seed test accuracy of each tuned form, paired by seed."""
  fig, axes = common.new_figure(1, 1, width=5.2, height=3.8)
  ax = axes[0, 0]
  order = ('adam', 'adam_l2', 'adamw')
  for seed in range(seeds):
    ax.plot(range(3), [100 * tuned[f][seed]['test_accuracy'] for f in order], color='gray',
            lw=0.8, alpha=0.6, marker='o', ms=3)
  for x, f in enumerate(order):
    vals = [100 * tuned[f][seed]['test_accuracy'] for seed in range(seeds)]
    ax.plot([x - 0.15, x + 0.15], [np.mean(vals)] * 2, color=FORMS[f][2], lw=3)
  ax.set_xticks(range(3), [FORMS[f][0].split(' (')[0] + ('\n(tuned lr)' if f == 'adam' else
                                                        '\n(tuned lr, strength)') for f in order])
  ax.set_ylabel('test accuracy (%) of the run chosen on validation')
  ax.set_title('Tuned vs tuned, one line per seed (bars: means)', fontsize=9)
  return out.figure(fig, TUNED_FIGURE,
                    'Test accuracy of each form at its validation-chosen (learning rate, '
                    'strength), paired by seed.')


# ----------------------------------------------------------------------------- report


def _fmt_p(row: Mapping[str, Any]) -> str:
  return f"{row['p_value']:.3g} ({row['p_adjusted']:.3g})"


def run(out_dir: str, mnist_dir: str, smoke: bool, seeds: int,
        log: Callable[[str], None] = common.log, reanalyze: str | None = None
        ) -> dict[str, Any]:
  """Trains the three forms, measures ridges and tuned-vs-tuned, writes `out_dir`.

  reanalyze: the results.json of a finished run. Then nothing is trained: its stored
  per-run numbers (validation, and the test accuracy measured once at each run's end)
  are analyzed again and report.md, the figures and results.json are written anew into
  `out_dir`, with the training run's runtime. For a change in the analysis only.
  """
  out = common.Outputs(out_dir, 'Adam + L2 vs AdamW (decoupled weight decay)')
  if reanalyze:
    return _reanalyze(out, reanalyze, mnist_dir)
  s = make_settings(smoke, seeds)
  base = make_config(s, mnist_dir)
  raw = load_source(base.data)  # One copy of the inputs; each seed splits it its own way.
  splits = [split(raw, common.override(base, data__split_seed=seed).data)
            for seed in range(s.seeds)]
  runs: dict[str, list[dict[str, Any]]] = {}
  compile_seconds = {}
  for form in ('adam_l2', 'adamw'):
    records, compile_seconds[form] = train_form(form, s, base, splits, log)
    for r in records:
      runs.setdefault(r['form'], []).append(r)
  sizes = {'train': splits[0].num_train, 'val': splits[0].num_val,
           'test': len(splits[0].y_test)}
  return analyze(out, s, runs, sizes, {'compile_seconds': compile_seconds})


def _reanalyze(out: common.Outputs, path: str, mnist_dir: str) -> dict[str, Any]:
  """`analyze` of the runs stored in a finished run's results.json (no training)."""
  with open(path, encoding='utf-8') as f:
    old = json.load(f)
  fields = {k: old['settings'][k] for k in (f.name for f in dataclasses.fields(Settings))}
  s = Settings(**{**fields, 'widths': tuple(fields['widths']),
                  'learning_rates': tuple(fields['learning_rates']),
                  'strengths': {k: tuple(v) for k, v in fields['strengths'].items()}})
  sizes = old.get('sizes')
  if sizes is None:  # Written before sizes were stored: split seed 0 again (no training).
    base = make_config(s, mnist_dir)
    d = split(load_source(base.data), common.override(base, data__split_seed=0).data)
    sizes = {'train': d.num_train, 'val': d.num_val, 'test': len(d.y_test)}
  training = old.get('training') or {k: old[k] for k in (
      'runtime_seconds', 'cpu_seconds', 'load_average_5min', 'machine')}
  extra = {'compile_seconds': old['compile_seconds'], 'training': training}
  return analyze(out, s, old['runs'], sizes, extra)


def analyze(out: common.Outputs, s: Settings, runs: Mapping[str, list[dict[str, Any]]],
            sizes: Mapping[str, int], extra: Mapping[str, Any]) -> dict[str, Any]:
  """Ridges, interaction, tuned vs tuned, figures and report of trained runs.

  runs: {'adam_l2' | 'adamw' | 'adam': one record per run (see `train_form`)}; sizes:
  {'train', 'val', 'test'} examples per seed; extra: stored in results.json as is
  ('training': the runtime of the training run when this is a re-analysis).
  """
  # The grids and their ridges (validation only).
  matrices = {f: grid_matrix(runs[f], s.learning_rates, s.strengths[f])
              for f in ('adam_l2', 'adamw')}
  loss_matrices = {f: grid_matrix(runs[f], s.learning_rates, s.strengths[f], 'val_loss')
                   for f in ('adam_l2', 'adamw')}
  keys = {'adam_l2': ('adam_l2', False), 'adamw': ('adamw', False),
          'adamw_paper': ('adamw', True)}
  ridges, loss_ridges, seed_stats = {}, {}, {}
  for key, (form, scaled) in keys.items():
    ridges[key] = ridge_stats(matrices[form], s.learning_rates, s.strengths[form], scaled)
    loss_ridges[key] = ridge_stats(-loss_matrices[form], s.learning_rates,
                                   s.strengths[form], scaled)
    seed_stats[key] = [ridge_stats(grid_matrix(runs[form], s.learning_rates,
                                               s.strengths[form], seed=seed),
                                   s.learning_rates, s.strengths[form], scaled)
                       for seed in range(s.seeds)]
  interaction = {f: interaction_share(matrices[f]) for f in matrices}
  seed_interaction = {f: {seed: interaction_share(grid_matrix(runs[f], s.learning_rates,
                                                              s.strengths[f], seed=seed))
                          for seed in range(s.seeds)} for f in matrices}
  # Family 1, the paper's first claim: Adam + L2's ridge moves more than AdamW's.
  per_seed = {key: {seed: st['log_range'] for seed, st in enumerate(seed_stats[key])}
              for key in keys}
  ridge_rows = paired_table(per_seed, [('adam_l2', 'adamw'), ('adam_l2', 'adamw_paper')])
  inter_row = paired_table(seed_interaction, [('adam_l2', 'adamw')])[0]
  # One family of three tests: re-adjust the three p-values together.
  family = ridge_rows + [inter_row]
  for row, p in zip(family, stats.holm([r['p_value'] for r in family])):
    row['p_adjusted'] = float(p)
  for row, name in zip(family, ('ridge spread, optax units', 'ridge spread, paper units',
                                'interaction share')):
    row['statistic'] = name

  # Family 2, tuned vs tuned on test accuracy (choices on validation).
  tuned = {f: choose_tuned(runs[f], s.seeds) for f in FORMS}
  test_by_seed = {f: {seed: r['test_accuracy'] for seed, r in tuned[f].items()
                      if not r['diverged']} for f in FORMS}
  tuned_rows = paired_table(test_by_seed, [('adamw', 'adam_l2'), ('adam_l2', 'adam'),
                                           ('adamw', 'adam')])
  claim1 = [verdict(r, +1) for r in family]
  claim2 = verdict(tuned_rows[0], +1)

  fig_heat = heatmap_figure(out, s, matrices,
                            {k: [st['best'] for st in seed_stats[k]] for k in keys},
                            ridges, tuned)
  fig_tuned = tuned_figure(out, tuned, s.seeds)

  # ---------------------------------------------------------------- report.md
  n_runs = sum(len(v) for v in runs.values())
  diverged = sum(r['diverged'] for v in runs.values() for r in v)
  if 'training' in extra:
    t = extra['training']
    out.add(f"Analysis rerun from the stored per-run numbers of a finished run (nothing "
            f"trained, no test set evaluated again). The training run took "
            f"{t['runtime_seconds'] / 60:.1f} min wall clock ({t['cpu_seconds'] / 60:.1f} "
            f"min of CPU time) on {t['machine']}; 5-minute load average at its end "
            f"{t['load_average_5min']:.1f}.")
  out.add(
      '## Setting',
      f"{s.dataset}: {sizes['train']:,} training and {sizes['val']:,} validation "
      f"images per seed (each seed its own split), {sizes['test']:,} test images; "
      f"MLP {s.widths}, Adam (b1 0.9, b2 0.999), batch 32, {s.epochs} epochs, cosine decay "
      f"of the learning rate to 0, final weights, {s.seeds} seeds. Learning rates "
      f"{', '.join(f'{v:g}' for v in s.learning_rates)}; l2 "
      f"{', '.join(f'{v:g}' for v in s.strengths['adam_l2'])}; weight_decay "
      f"{', '.join(f'{v:g}' for v in s.strengths['adamw'])}. Only kernels are regularized. "
      f"{n_runs} runs ({diverged} diverged), one vmapped program per form.",
      '## Mean validation accuracy (%) over the grid',
      *[f'**{FORMS[f][0]}** (rows: learning rate; columns: strength)\n\n'
        + common.markdown_table(
            ['lr \\ ' + FORMS[f][1]] + [f'{v:g}' for v in s.strengths[f]],
            [[f'{lr:g}'] + [f'{100 * v:.2f}' for v in matrices[f][i]]
             for i, lr in enumerate(s.learning_rates)]) for f in matrices],
      '## Ridge of optima (claim 1)',
      common.markdown_table(
          ['learning rate', 'best l2 (Adam + L2)', 'best wd (AdamW)',
           'best lr x wd (AdamW, paper units)'],
          [[f'{lr:g}', f"{ridges['adam_l2']['best'][i]:g}", f"{ridges['adamw']['best'][i]:g}",
            f"{ridges['adamw_paper']['best'][i]:.3g}"]
           for i, lr in enumerate(s.learning_rates)]),
      common.markdown_table(
          ['ridge (mean over seeds)', 'spread (decades)', 'slope d log s / d log lr',
           'lrs whose best is on a grid edge', 'spread on val loss (decades)'],
          [[label, f"{ridges[k]['log_range']:.2f}", f"{ridges[k]['slope']:+.2f}",
            f"{ridges[k]['on_edge']}/{len(s.learning_rates)}",
            f"{loss_ridges[k]['log_range']:.2f}"]
           for k, label in (('adam_l2', 'Adam + L2 (l2)'), ('adamw', 'AdamW (wd)'),
                            ('adamw_paper', 'AdamW (lr x wd)'))]),
      f"Interaction share of the mean grid: Adam + L2 {interaction['adam_l2']:.3f}, AdamW "
      f"{interaction['adamw']:.3f}.",
      'Per seed, paired (Adam + L2 minus AdamW), one family of three tests:',
      common.markdown_table(
          ['statistic', 'Adam + L2', 'AdamW', 'difference (95% CI)',
           'p sign-flip (Holm)', 'verdict'],
          [[r['statistic'],
            common.pm(list(per_seed['adam_l2'].values()) if i < 2
                      else list(seed_interaction['adam_l2'].values()), scale=1.0),
            common.pm(list(per_seed[r['b']].values()) if i < 2
                      else list(seed_interaction['adamw'].values()), scale=1.0),
            f"{r['diff_mean']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]",
            _fmt_p(r), claim1[i]] for i, r in enumerate(family)]),
      f"With {s.seeds} seeds the sign-flip p cannot go below "
      f"{stats.min_attainable_p(s.seeds):.3g}.",
      '## Tuned vs tuned (claim 2)',
      common.markdown_table(
          ['form', 'test acc % (chosen on validation)', 'val acc %',
           'chosen (lr, strength) per seed'],
          [[FORMS[f][0], common.pm([r['test_accuracy'] for r in tuned[f].values()]),
            common.pm([r['val_accuracy'] for r in tuned[f].values()]),
            ', '.join(f"({r['lr']:g}, {r['strength']:g})" for r in tuned[f].values())]
           for f in FORMS]),
      common.markdown_table(
          ['comparison', 'difference pp (95% CI)', 'p sign-flip (Holm over 3)'],
          [[f"{FORMS[r['a']][0].split(' (')[0]} - {FORMS[r['b']][0].split(' (')[0]}",
            f"{100 * r['diff_mean']:+.2f} [{100 * r['ci_low']:+.2f}, "
            f"{100 * r['ci_high']:+.2f}]", _fmt_p(r)] for r in tuned_rows]),
      f'Verdicts (Holm-adjusted p < {ALPHA}): claim 1 (ridge spread, optax units) '
      f'{claim1[0]}; (paper units) {claim1[1]}; (interaction) {claim1[2]}; claim 2 '
      f'(tuned AdamW beats tuned Adam + L2) {claim2}.',
      fig_heat, fig_tuned)
  out.results.update({
      'settings': dataclasses.asdict(s) | {'select': list(SELECT)},
      'runs': runs, 'sizes': dict(sizes), **extra,
      'val_accuracy_grid': {f: m.tolist() for f, m in matrices.items()},
      'val_loss_grid': {f: m.tolist() for f, m in loss_matrices.items()},
      'ridges': ridges, 'ridges_on_val_loss': loss_ridges,
      'seed_ridges': seed_stats,
      'interaction_share': interaction, 'seed_interaction_share': seed_interaction,
      'claim1_tests': family, 'claim1_verdicts': claim1,
      'tuned': {f: {str(seed): r for seed, r in t.items()} for f, t in tuned.items()},
      'tuned_tests': tuned_rows, 'claim2_verdict': claim2,
  })
  out.write()
  return out.results


if __name__ == '__main__':
  flags.DEFINE_string('reanalyze', None, 'results.json of a finished run: analyze its '
                      'stored runs again into --out, without training.')
  common.script_main(run, extra_args=lambda f: {'reanalyze': f.reanalyze}, default_seeds=6)
