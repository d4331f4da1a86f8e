r"""Experiment 2: bias-variance decomposition of test error along an L2 sweep, per width.

  python -m experiments.bias_variance --out=/tmp/bias_variance [--mnist_dir=DIR] \
      [--smoke] [--seeds=N]

For each hidden width and each coupled L2 strength (`penalty.l2`), `--seeds` members are
trained; member m sees bootstrap resample m of a fixed MNIST training subset (drawn with
`np.random.default_rng(m)`) and initialises / shuffles with `jax.random.key(m)`. So the
spread between members is the variance over both training sets and seeds, and member m
is the same draw at every strength and width (common random numbers). Training runs a
fixed number of epochs without early stopping, so L2 is the only regularizer. Each
member is a `train.Run` whose Dataset is a view of the base split through its bootstrap
rows, and all members of a width (every strength and resample) train as one vmapped
program (`train.RunGroup`): regjax's one training program, batch for batch.

The members' test predictions are decomposed two ways (noise assumed 0):
  * Domingos (2000), 0-1 loss. Main prediction y_m(x) = the mode of the members' labels
    (ties to the smallest class). Bias B(x) = 1[y_m != y]; variance V(x) = share of
    members that disagree with y_m. The expected loss is NOT bias + variance: variance
    adds on unbiased points and subtracts on biased ones,
      E L = E B + E[(1 - B) V] - E[B c V],  c(x) = P(member = y | member != y_m),
    (c = 1 for two classes); the script checks this to float precision.
  * Squared error on probability vectors (the Brier score): p_bar(x) = mean member
    probability vector, bias^2 = ||p_bar - onehot(y)||^2, variance = mean ||p - p_bar||^2,
    and E ||p - onehot(y)||^2 = bias^2 + variance exactly.
Spreads are jackknife standard errors over members (the Monte Carlo error of having a
finite number of training draws). Variances are plug-in estimates over M members, biased
low by the factor (M - 1) / M, which keeps the decompositions exact.

Outputs in --out: results.json, bias_variance_decomposition.png, report.md.
"""

import dataclasses
import os
from pathlib import Path
import time
from typing import Any, Callable, Sequence

import jax
from matplotlib import figure as mpl_figure
from matplotlib.backends import backend_agg
import ml_collections
import numpy as np

from regjax import report
from regjax import schema
from regjax import train
from regjax.data import Dataset, load_dataset
from regjax.errors import ConfigError
from regjax.trainer import Trainer
from experiments import common

FIGURE = 'bias_variance_decomposition.png'


@dataclasses.dataclass(frozen=True)
class Settings:
  """What one run sweeps. train_size: examples in the subset that is resampled."""
  dataset: str
  train_size: int
  widths: tuple[int, ...]
  l2_values: tuple[float, ...]
  members: int
  epochs: int
  batch_size: int
  learning_rate: float


def make_settings(smoke: bool, seeds: int) -> Settings:
  """The full MNIST sweep, or a seconds-long one on digits for tests."""
  if seeds < 2:
    raise ConfigError('seeds', seeds, 'must be >= 2 (variance needs several members)')
  if smoke:
    return Settings(dataset='digits', train_size=300, widths=(16,), l2_values=(0.0, 0.1),
                    members=seeds, epochs=2, batch_size=32, learning_rate=1e-3)
  return Settings(dataset='mnist', train_size=2000, widths=(16, 64, 256),
                  l2_values=(0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1), members=seeds,
                  epochs=30, batch_size=32, learning_rate=1e-3)


def base_config(s: Settings, mnist_dir: str) -> ml_collections.ConfigDict:
  """The regjax config shared by every member (the width is set per sweep point)."""
  c = schema.default_config()
  c.data.name = s.dataset
  c.data.dir = mnist_dir if s.dataset == 'mnist' else ''
  c.data.train_size = s.train_size
  c.optimizer.name = 'adam'
  c.optimizer.learning_rate = s.learning_rate
  c.train.epochs = s.epochs
  c.train.batch_size = s.batch_size
  c.early_stopping.enabled = False
  return c


def bootstrap_indices(n: int, members: int) -> np.ndarray:
  """(members, n) int32: row m resamples range(n) with replacement, rng seeded by m."""
  return np.stack([np.random.default_rng(m).integers(0, n, size=n, dtype=np.int32)
                   for m in range(members)])


def member_runs(config: ml_collections.ConfigDict, data: Dataset, rows: np.ndarray,
                l2_values: Sequence[float], seeds: Sequence[int]) -> list[train.Run]:
  """One `train.Run` per member r: it trains on bootstrap row r of the base split.

  rows: (M, n) int32 positions in the base training split (`bootstrap_indices`).
  Member r's Dataset is a view of `data` (no inputs are copied): training pool rows
  `data.train_idx[rows[r]]` with labels `data.y_train[rows[r]]`, the base split's test
  set, and no validation set. Its config is `config` with `penalty.l2 = l2_values[r]`,
  and its seed `seeds[r]` gives its init, shuffle and dropout keys.
  """
  runs = []
  for r, l2, seed in zip(rows, l2_values, seeds):
    member = ml_collections.ConfigDict(config.to_dict())
    member.penalty.l2 = float(l2)
    # Without early stopping nothing reads the validation set; evaluating it every epoch
    # would cost each member more than its training (3x the examples on MNIST).
    resample = dataclasses.replace(data, train_idx=data.train_idx[r],
                                   y_train=data.y_train[r],
                                   val_idx=data.val_idx[:0])
    runs.append(train.Run(member, int(seed), resample))
  return runs


def fit_members(runs: Sequence[train.Run]
                ) -> tuple[dict[str, Any], list[list[dict[str, float]]], Trainer]:
  """Trains the members as one vmapped program (`train.RunGroup`) to their last epoch.

  Returns (variables, histories, trainer): the final params and batch_stats stacked
  with a leading member axis (M, ...), each member's per-epoch metrics rows, and the
  program's `Trainer` (its model makes the predictions).
  """
  group = train.RunGroup(runs)
  results = group.fit()
  variables = jax.tree.map(lambda *a: np.stack(a), *[v for _, _, v in results])
  return variables, [history for _, history, _ in results], group.program.trainer


def predict_probs(trainer: Trainer, variables: dict[str, Any], x: np.ndarray,
                  chunk: int = 1000) -> np.ndarray:
  """Softmax probabilities (M, N, C) of M stacked members on x (N, ...), in chunks."""
  def probs(v, xb):
    return jax.nn.softmax(trainer.model.apply(v, xb, train=False), axis=-1)

  apply = jax.jit(jax.vmap(probs, in_axes=(0, None)))
  return np.concatenate([np.asarray(apply(variables, x[i:i + chunk]))
                         for i in range(0, len(x), chunk)], axis=1)


def zero_one_decomposition(preds: np.ndarray, y: np.ndarray,
                           num_classes: int) -> dict[str, float]:
  """Domingos' (2000) 0-1 decomposition of members' labels preds (M, N) against y (N,).

  Returns test-set means (fractions): 'loss' (mean member error), 'bias', 'variance'
  (disagreement with the main prediction), its 'variance_unbiased' / 'variance_biased'
  parts, 'net_variance' = variance_unbiased - E[B c V] and 'residual' =
  loss - (bias + net_variance) (zero up to float rounding).
  """
  counts = np.stack([(preds == k).sum(0) for k in range(num_classes)])  # (C, N)
  main = counts.argmax(0)  # argmax takes the first maximum: ties go to the lowest class.
  bias = (main != y).astype(np.float64)
  variance = (preds != main).mean(0)
  loss = (preds != y).mean(0)
  # On a biased point a member that leaves the (wrong) main prediction can only help:
  # B c V = B * P(member == y), because member == y implies member != main there.
  helped = bias * (preds == y).mean(0)
  out = {
      'loss': loss.mean(), 'bias': bias.mean(), 'variance': variance.mean(),
      'variance_unbiased': ((1 - bias) * variance).mean(),
      'variance_biased': (bias * variance).mean(),
      'net_variance': ((1 - bias) * variance - helped).mean(),
  }
  out['residual'] = out['loss'] - (out['bias'] + out['net_variance'])
  return {k: float(v) for k, v in out.items()}


def squared_decomposition(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
  """Squared-error decomposition of probabilities probs (M, N, C) against labels y (N,).

  Returns test-set means: 'error' = E||p - onehot||^2, 'bias2' = ||p_bar - onehot||^2,
  'variance' = E||p - p_bar||^2, 'residual' = error - bias2 - variance (float rounding).
  """
  p = probs.astype(np.float64)
  onehot = np.eye(p.shape[-1])[y]
  p_bar = p.mean(0)
  out = {
      'error': ((p - onehot) ** 2).sum(-1).mean(),
      'bias2': ((p_bar - onehot) ** 2).sum(-1).mean(),
      'variance': ((p - p_bar) ** 2).sum(-1).mean(),
  }
  out['residual'] = out['error'] - out['bias2'] - out['variance']
  return {k: float(v) for k, v in out.items()}


def jackknife_se(fn: Callable[[np.ndarray], dict[str, float]], members: np.ndarray
                 ) -> dict[str, float]:
  """Jackknife standard error over the leading (member) axis of each value fn returns."""
  m = members.shape[0]
  loo = [fn(np.delete(members, i, axis=0)) for i in range(m)]
  return {k: float(np.sqrt((m - 1) / m * np.sum((np.array([d[k] for d in loo])
                                                  - np.mean([d[k] for d in loo])) ** 2)))
          for k in loo[0]}


def decompose(probs: np.ndarray, y: np.ndarray, num_classes: int) -> dict[str, Any]:
  """Both decompositions of probs (M, N, C), with jackknife SEs and per-member errors."""
  preds = probs.argmax(-1)
  member_err = (preds != y).mean(1)
  member_sq = ((probs.astype(np.float64) - np.eye(probs.shape[-1])[y]) ** 2).sum(-1).mean(1)
  ensemble = squared_decomposition(probs, y)
  return {
      'zero_one': zero_one_decomposition(preds, y, num_classes),
      'zero_one_se': jackknife_se(lambda p: zero_one_decomposition(p, y, num_classes),
                                  preds),
      'squared': ensemble,
      'squared_se': jackknife_se(lambda p: squared_decomposition(p, y), probs),
      'member_test_error': [float(e) for e in member_err],
      'member_squared_error': [float(e) for e in member_sq],
      'member_test_error_mean': float(member_err.mean()),
      'member_test_error_std': float(member_err.std(ddof=1)),
      'ensemble_test_error': float((probs.mean(0).argmax(-1) != y).mean()),
  }


def paired_vs_unregularized(points: list[dict[str, Any]]) -> None:
  """Adds to each point with L2 > 0 the paired test of its members' errors against the
  same members (same bootstrap resample and seed) without L2, for the 0-1 error and the
  squared error: 'paired' = {'zero_one': ..., 'squared': ...} (common.paired_test, in
  fractions), Holm over the strengths of a width ('p_adjusted').

  The mean of the member errors is the expected error E L of the decomposition, so this
  tests whether an L2 strength changes the expected error beyond the member-to-member
  spread.
  """
  for width in sorted({p['width'] for p in points}):
    row = [p for p in points if p['width'] == width]
    base = next((p for p in row if p['l2'] == 0), None)
    if base is None:
      continue
    tested = [p for p in row if p['l2'] != 0]
    for key, member_key in (('zero_one', 'member_test_error'),
                            ('squared', 'member_squared_error')):
      for p in tested:
        p.setdefault('paired', {})[key] = common.paired_test(
            np.subtract(p[member_key], base[member_key]))
      ps = [p['paired'][key]['p_value'] for p in tested]
      for p, adj in zip(tested, common.stats.holm(ps)):
        p['paired'][key]['p_adjusted'] = float(adj)


def run(out: str, mnist_dir: str = '', smoke: bool = False, seeds: int = 8
        ) -> dict[str, Any]:
  """Runs the sweep, writes results.json, the figure and report.md into `out`."""
  t_start, c_start = time.perf_counter(), time.process_time()
  s = make_settings(smoke, seeds)
  config = base_config(s, mnist_dir)
  data = load_dataset(config.data)
  idx = bootstrap_indices(data.num_train, s.members)
  n_l2 = len(s.l2_values)
  # Flattened (strength, member) grid: row r is strength r // members, member r % members.
  grid_rows = np.tile(idx, (n_l2, 1))
  grid_l2 = np.repeat(s.l2_values, s.members)
  grid_seeds = np.tile(np.arange(s.members), n_l2)
  points = []
  for width in s.widths:
    config.model.widths = (width,)
    t0 = time.perf_counter()
    variables, histories, trainer = fit_members(
        member_runs(config, data, grid_rows, grid_l2, grid_seeds))
    probs = predict_probs(trainer, variables, data.x_test)
    seconds = time.perf_counter() - t0
    # float32, as the program computed them (their mean too).
    final_train_acc = np.float32([h[-1]['train_accuracy'] for h in histories])
    for j, l2 in enumerate(s.l2_values):
      rows = slice(j * s.members, (j + 1) * s.members)
      point = {'width': width, 'l2': l2, **decompose(probs[rows], data.y_test,
                                                     data.num_classes)}
      point['last_epoch_train_accuracy_mean'] = float(final_train_acc[rows].mean())
      points.append(point)
    print(f'width {width}: {n_l2 * s.members} members in {seconds:.1f} s', flush=True)
  paired_vs_unregularized(points)
  results = {
      'settings': dataclasses.asdict(s),
      'data': {'name': data.name, 'train_size': data.num_train,
               'test_size': len(data.y_test)},
      'points': points,
      'max_abs_residual': {
          'zero_one': max(abs(p['zero_one']['residual']) for p in points),
          'squared': max(abs(p['squared']['residual']) for p in points)},
      'runtime_seconds': time.perf_counter() - t_start,
      'cpu_seconds': time.process_time() - c_start,
      'load_average_5min': os.getloadavg()[1],
      'machine': common.machine(),
  }
  out_dir = Path(out)
  out_dir.mkdir(parents=True, exist_ok=True)
  report.atomic_write_json(str(out_dir / 'results.json'), results)
  plot(results, str(out_dir / FIGURE))
  report.atomic_write_text(str(out_dir / 'report.md'), markdown(results))
  return results


def plot(results: dict[str, Any], path: str) -> None:
  """Two rows (0-1, squared) x three panels (bias, variance, error) vs L2, one line/width.

  The 0-1 variance panel shows the disagreement V (solid) and the net variance that
  enters the loss (dashed).
  """
  s = results['settings']
  rows = [('zero_one', '0-1 (Domingos), %', 100.0,
           [('bias', 'bias'), ('variance', 'variance V (--: net)'),
            ('loss', 'expected 0-1 loss')]),
          ('squared', 'squared, prob. vectors', 1.0,
           [('bias2', 'bias$^2$'), ('variance', 'variance'),
            ('error', 'expected error')])]
  fig = mpl_figure.Figure(figsize=(11, 6.4), dpi=120, layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  axes = fig.subplots(2, 3, sharex=True)
  nonzero = [v for v in s['l2_values'] if v > 0]
  linthresh = min(nonzero) if nonzero else 1.0
  for r, (kind, title, scale, quantities) in enumerate(rows):
    for c, (key, label) in enumerate(quantities):
      ax = axes[r, c]
      for i, width in enumerate(s['widths']):
        pts = [p for p in results['points'] if p['width'] == width]
        xs = [p['l2'] for p in pts]
        ys = [scale * p[kind][key] for p in pts]
        es = [scale * p[kind + '_se'][key] for p in pts]
        ax.errorbar(xs, ys, yerr=es, marker='o', ms=4, lw=1.5, capsize=2, color=f'C{i}',
                    label=f'width {width}')
        if kind == 'zero_one' and key == 'variance':
          ax.errorbar(xs, [scale * p[kind]['net_variance'] for p in pts],
                      yerr=[scale * p[kind + '_se']['net_variance'] for p in pts],
                      marker='s', ms=3, lw=1.0, ls='--', capsize=2, color=f'C{i}')
      ax.set_xscale('symlog', linthresh=linthresh)
      ax.set_title(f'{title}: {label}', fontsize=10)
      ax.grid(True, alpha=0.3)
      if r == 1:
        ax.set_xlabel('penalty.l2 (symlog; 0 at left)')
  axes[0, 0].legend(fontsize=8, frameon=False)
  fig.suptitle(f"{results['data']['name']}, {results['data']['train_size']} training "
               f"examples, {s['members']} bootstrap/seed members per point, "
               f"{s['epochs']} epochs; bars: jackknife SE over members", fontsize=10)
  fig.savefig(path, dpi=120)


def markdown(results: dict[str, Any]) -> str:
  """The report: settings, both decompositions as tables, the additivity checks."""
  s = results['settings']
  lines = [
      '# Experiment 2: bias-variance decomposition along L2 strength',
      '',
      f"{results['data']['name']}: {results['data']['train_size']} training examples, "
      f"test set of {results['data']['test_size']}. MLP with one hidden layer, Adam "
      f"{s['learning_rate']:g}, batch {s['batch_size']}, {s['epochs']} epochs, no early "
      f"stopping. {s['members']} members per point (bootstrap resample m + seed m). "
      f"Runtime {results['runtime_seconds'] / 60:.1f} min wall clock "
      f"({results['cpu_seconds'] / 60:.1f} min of CPU time) on {results['machine']}; "
      f"5-minute load average at the end {results['load_average_5min']:.1f}.",
      '',
      'Values in percent of the test set (0-1) or x100 (squared), ± jackknife SE over '
      'members. Net var = unbiased variance - biased-variance credit.',
      '',
      '| width | L2 | 0-1 loss | bias | variance | net var | squared err | bias² | '
      'variance | member err (mean ± sd) | ensemble err |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for p in results['points']:
    z, zs, q, qs = p['zero_one'], p['zero_one_se'], p['squared'], p['squared_se']

    def pm(d, e, k):
      return f'{100 * d[k]:.2f} ± {100 * e[k]:.2f}'
    lines.append(
        f"| {p['width']} | {p['l2']:g} | {pm(z, zs, 'loss')} | {pm(z, zs, 'bias')} | "
        f"{pm(z, zs, 'variance')} | {pm(z, zs, 'net_variance')} | {pm(q, qs, 'error')} | "
        f"{pm(q, qs, 'bias2')} | {pm(q, qs, 'variance')} | "
        f"{100 * p['member_test_error_mean']:.2f} ± {100 * p['member_test_error_std']:.2f}"
        f" | {100 * p['ensemble_test_error']:.2f} |")
  lines += ['', 'Each L2 strength against the same members without L2 (paired by '
            'member: same bootstrap resample and seed): mean change of the member errors '
            '(= the expected error) with its 95% t-interval, sign-flip p / Holm p over the '
            'strengths of a width (* = Holm p < 0.05).', '',
            '| width | L2 | Δ 0-1 error pp | p / Holm p | Δ squared error x100 | '
            'p / Holm p |', '|---|---|---|---|---|---|']
  for p in results['points']:
    if 'paired' not in p:
      continue
    cells = []
    for key in ('zero_one', 'squared'):
      t = p['paired'][key]
      cells += [f"{100 * t['mean']:+.2f} [{100 * t['low']:+.2f}, {100 * t['high']:+.2f}]",
                f"{t['p_value']:.2g} / {t['p_adjusted']:.2g}"
                + (' *' if t['p_adjusted'] < 0.05 else '')]
    lines.append(f"| {p['width']} | {p['l2']:g} | " + ' | '.join(cells) + ' |')
  res = results['max_abs_residual']
  lines += [
      '',
      f"Additivity: max |squared error - (bias² + variance)| = {res['squared']:.1e}; "
      f"max |0-1 loss - (bias + net variance)| = {res['zero_one']:.1e} "
      '(Domingos: E L = E B + E[(1-B)V] - E[B c V]; plain bias + variance over-counts '
      'the loss on biased points).',
      '',
      f'![decomposition]({FIGURE})',
      '',
  ]
  return '\n'.join(lines)



if __name__ == '__main__':
  common.script_main(run, default_seeds=8,
                     seeds_help='Members (bootstrap resample + seed) per point (>= 2).')
