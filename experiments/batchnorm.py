r"""Experiment 6: does batch normalization train faster and tolerate bad initialization?

  python -m experiments.batchnorm --out=/tmp/batchnorm [--mnist_dir=DIR] [--smoke] \
      [--seeds=N]

The notebook claims BatchNorm (a) speeds training up and (b) makes the network less
sensitive to its initialization. Both are measured on one grid: an MLP with and without
BatchNorm (after each hidden Dense, before the ReLU), trained with SGD + momentum 0.9
over learning rates x initialization scales (`model.kernel_init_scale` multiplies the
lecun-normal init of every Dense, the output layer included), for `--seeds` seeds each.
No early stopping: every run trains the same fixed number of epochs, and the validation
accuracy after each epoch gives the number of steps it took to first reach the target
(resolution: one epoch). A run that never reaches it (or diverges) is "not reached".

  (a) speed: steps to the target, BN vs no BN, cell by cell and at each init scale's
      best learning rate;
  (b) sensitivity: for each learning rate, how many init scales reach the target in
      every seed, and the spread (max - min over init scales) of the final validation
      accuracy.

Outputs in --out: results.json, batchnorm_steps.png, batchnorm_curves.png, report.md.
"""

import dataclasses
import math
import os
from pathlib import Path
import time
from typing import Any

import matplotlib
from matplotlib import figure as mpl_figure
from matplotlib.backends import backend_agg
import ml_collections
import numpy as np

from regjax import report
from regjax import schema
from regjax import train
from regjax.data import load_dataset
from regjax.errors import ConfigError
from experiments import common

STEPS_FIGURE = 'batchnorm_steps.png'
CURVES_FIGURE = 'batchnorm_curves.png'


@dataclasses.dataclass(frozen=True)
class Settings:
  """The grid. targets: validation accuracies (fractions) whose first crossing is timed;
  the first is the headline one."""
  dataset: str
  train_size: int
  validation_fraction: float
  widths: tuple[int, ...]
  learning_rates: tuple[float, ...]
  init_scales: tuple[float, ...]
  seeds: int
  epochs: int
  batch_size: int
  targets: tuple[float, ...]


def make_settings(smoke: bool, seeds: int) -> Settings:
  """The full MNIST grid, or a seconds-long one on digits for tests."""
  if seeds < 1:
    raise ConfigError('seeds', seeds, 'must be >= 1')
  if smoke:
    return Settings(dataset='digits', train_size=400, validation_fraction=0.2,
                    widths=(16, 16), learning_rates=(0.1,), init_scales=(1.0,),
                    seeds=seeds, epochs=3, batch_size=32, targets=(0.5, 0.9))
  return Settings(dataset='mnist', train_size=5000, validation_fraction=0.05,
                  widths=(128, 128, 128), learning_rates=(1e-3, 1e-2, 1e-1, 1.0),
                  init_scales=(0.1, 1.0, 3.0, 10.0), seeds=seeds, epochs=20,
                  batch_size=50, targets=(0.90, 0.95))


def make_config(s: Settings, mnist_dir: str, batch_norm: bool, lr: float,
                init_scale: float) -> ml_collections.ConfigDict:
  """The regjax config of one grid cell."""
  c = schema.default_config()
  c.data.name = s.dataset
  c.data.dir = mnist_dir if s.dataset == 'mnist' else ''
  c.data.train_size = s.train_size
  c.data.validation_fraction = s.validation_fraction
  c.model.widths = s.widths
  c.model.batch_norm = batch_norm
  c.model.kernel_init_scale = init_scale
  c.optimizer.name = 'momentum'
  c.optimizer.momentum = 0.9
  c.optimizer.learning_rate = lr
  c.train.epochs = s.epochs
  c.train.batch_size = s.batch_size
  c.early_stopping.enabled = False
  return c


def epochs_to_target(curve: list[float | None], target: float) -> int | None:
  """1-based count of epochs until the accuracy curve first reaches target; None if never.

  A None/NaN entry (a diverged epoch) never counts as reaching it.
  """
  for epoch, acc in enumerate(curve):
    if acc is not None and math.isfinite(acc) and acc >= target:
      return epoch + 1
  return None


def train_grid(s: Settings, mnist_dir: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
  """Trains every (BN, init scale, lr, seed); returns run rows and the data sizes."""
  data = load_dataset(make_config(s, mnist_dir, False, 0.1, 1.0).data)
  runs = []
  for bn in (False, True):
    for scale in s.init_scales:
      for lr in s.learning_rates:
        config = make_config(s, mnist_dir, bn, lr, scale)
        for seed in range(s.seeds):
          record, history, _ = train.fit(config, data, seed)
          runs.append({
              'batch_norm': bn, 'init_scale': scale, 'learning_rate': lr, 'seed': seed,
              'val_accuracy_curve': [r['val_accuracy'] for r in history],
              'train_loss_curve': [r['train_loss'] for r in history],
              'final_val_accuracy': history[-1]['val_accuracy'],
              'test_accuracy': record['test_accuracy'],
              'diverged': record['diverged'],
              'seconds_per_epoch': record['seconds_per_epoch'],
              'compile_seconds': record['compile_seconds'],
          })
        print(f'bn={bn} scale={scale:g} lr={lr:g}: final val '
              f"{[round(r['final_val_accuracy'], 4) for r in runs[-s.seeds:]]}", flush=True)
  sizes = {'train_size': len(data.y_train), 'val_size': len(data.y_val),
           'test_size': len(data.y_test),
           'steps_per_epoch': len(data.y_train) // s.batch_size}
  return runs, sizes


def analyze(runs: list[dict[str, Any]], s: Settings, sizes: dict[str, int],
            dataset: str) -> dict[str, Any]:
  """Steps to each target per run, the per-cell summaries and the claims."""
  spe = sizes['steps_per_epoch']
  for r in runs:
    epochs = [epochs_to_target(r['val_accuracy_curve'], t) for t in s.targets]
    r['steps_to_target'] = [None if e is None else e * spe for e in epochs]
  cells = summarize_cells(runs, s)
  claim_list = [claims(cells, s, t) for t in range(len(s.targets))]
  for t, cl in enumerate(claim_list):
    speed_tests(runs, cl, s, t, spe)
  return {
      'settings': dataclasses.asdict(s),
      'data': {'name': dataset, **{k: v for k, v in sizes.items() if k != 'steps_per_epoch'}},
      'steps_per_epoch': spe,
      'runs': runs,
      'cells': cells,
      'claims': claim_list,
  }


def speed_tests(runs: list[dict[str, Any]], claim: dict[str, Any], s: Settings, t: int,
                steps_per_epoch: int) -> None:
  """Adds to each init scale of `claim` the paired test of 'BN is faster'.

  Per seed: steps to target t without BN (at that arm's best learning rate) minus with
  BN (at its own), a run that never reaches the target counted as (epochs + 1) epochs
  (so a miss understates the gap); sign-flip p per scale, Holm over the scales. The
  learning rates were chosen on the same validation curves (median steps), for both
  arms alike. Sets row['paired'] = {'mean', 'low', 'high', 'p_value', 'p_adjusted',
  'n', 'bn_faster_seeds'} (steps), or None when BN never reaches the target.
  """
  censored = (s.epochs + 1) * steps_per_epoch

  def steps(bn, scale, lr):
    rs = sorted((r for r in runs if (r['batch_norm'], r['init_scale'], r['learning_rate'])
                 == (bn, scale, lr)), key=lambda r: r['seed'])
    return [censored if r['steps_to_target'][t] is None else r['steps_to_target'][t]
            for r in rs]

  rows = claim['best_lr_per_init_scale']
  for row in rows:
    if row['bn_best_lr'] is None:
      row['paired'] = None
      continue
    bn = steps(True, row['init_scale'], row['bn_best_lr'])
    plain = (steps(False, row['init_scale'], row['plain_best_lr'])
             if row['plain_best_lr'] is not None else [censored] * len(bn))
    diffs = np.subtract(plain, bn).astype(float)
    row['paired'] = common.paired_test(diffs) | {
        'bn_faster_seeds': int(np.sum(diffs > 0))}
  tested = [r for r in rows if r['paired'] is not None
            and math.isfinite(r['paired']['p_value'])]
  for r, p in zip(tested, common.stats.holm([r['paired']['p_value'] for r in tested])):
    r['paired']['p_adjusted'] = float(p)


def write_outputs(results: dict[str, Any], out: str) -> None:
  """results.json, the two figures and report.md into `out`."""
  out_dir = Path(out)
  out_dir.mkdir(parents=True, exist_ok=True)
  report.atomic_write_json(str(out_dir / 'results.json'), results)
  plot_steps(results, str(out_dir / STEPS_FIGURE))
  plot_curves(results, str(out_dir / CURVES_FIGURE))
  report.atomic_write_text(str(out_dir / 'report.md'), markdown(results))


def run(out: str, mnist_dir: str = '', smoke: bool = False, seeds: int = 8
        ) -> dict[str, Any]:
  """Trains the grid, writes results.json, the figures and report.md into `out`."""
  t_start, c_start = time.perf_counter(), time.process_time()
  s = make_settings(smoke, seeds)
  runs, sizes = train_grid(s, mnist_dir)
  results = analyze(runs, s, sizes, s.dataset)
  results.update(runtime_seconds=time.perf_counter() - t_start,
                 cpu_seconds=time.process_time() - c_start,
                 load_average_5min=os.getloadavg()[1], machine=common.machine())
  write_outputs(results, out)
  return results


def _median_steps(steps: list[int | None]) -> float | None:
  """Median with 'not reached' counted as infinitely slow; None if the median is such."""
  values = sorted(math.inf if v is None else v for v in steps)
  med = float(np.median(values)) if values else math.inf
  return med if math.isfinite(med) else None


def summarize_cells(runs: list[dict[str, Any]], s: Settings) -> list[dict[str, Any]]:
  """One row per (batch_norm, init_scale, learning_rate): seed statistics.

  Per target (lists aligned with s.targets): 'reached' seeds, 'steps_median' counting a
  run that never reached it as infinitely slow (None when most runs missed it), and
  the fastest / slowest seed that reached it. A diverged run's final accuracy counts 0.
  """
  cells = []
  for bn in (False, True):
    for scale in s.init_scales:
      for lr in s.learning_rates:
        rs = [r for r in runs if (r['batch_norm'], r['init_scale'], r['learning_rate'])
              == (bn, scale, lr)]
        finals = [r['final_val_accuracy'] for r in rs]
        finals = [v if v is not None and math.isfinite(v) else 0.0 for v in finals]
        cell = {'batch_norm': bn, 'init_scale': scale, 'learning_rate': lr, 'n': len(rs),
                'diverged': sum(bool(r['diverged']) for r in rs),
                'final_val_mean': float(np.mean(finals)),
                'final_val_std': float(np.std(finals, ddof=1)) if len(finals) > 1 else None,
                'seconds_per_epoch_mean': float(np.mean([r['seconds_per_epoch']
                                                         for r in rs])),
                'reached': [], 'steps_median': [], 'steps_min': [], 'steps_max': []}
        for t in range(len(s.targets)):
          steps = [r['steps_to_target'][t] for r in rs]
          reached = [v for v in steps if v is not None]
          cell['reached'].append(len(reached))
          cell['steps_median'].append(_median_steps(steps))
          cell['steps_min'].append(min(reached) if reached else None)
          cell['steps_max'].append(max(reached) if reached else None)
        cells.append(cell)
  return cells


def _cell(cells, bn, scale, lr):
  return next(c for c in cells if (c['batch_norm'], c['init_scale'], c['learning_rate'])
              == (bn, scale, lr))


def claims(cells: list[dict[str, Any]], s: Settings, t: int) -> dict[str, Any]:
  """The two claims in numbers for target index t; None = target not reached."""
  per_scale = []
  for scale in s.init_scales:
    row = {'init_scale': scale}
    for bn, name in ((False, 'plain'), (True, 'bn')):
      best = [(c['steps_median'][t], c['learning_rate']) for c in
              (_cell(cells, bn, scale, lr) for lr in s.learning_rates)
              if c['steps_median'][t] is not None]
      row[f'{name}_best_steps'], row[f'{name}_best_lr'] = min(best) if best else (None, None)
    per_scale.append(row)
  paired = []  # Cells where both reached the target in most seeds: speed-up factor.
  for scale in s.init_scales:
    for lr in s.learning_rates:
      a, b = _cell(cells, False, scale, lr), _cell(cells, True, scale, lr)
      if a['steps_median'][t] is not None and b['steps_median'][t] is not None:
        paired.append(a['steps_median'][t] / b['steps_median'][t])
  per_lr = []
  for lr in s.learning_rates:
    row = {'learning_rate': lr}
    for bn, name in ((False, 'plain'), (True, 'bn')):
      cs = [_cell(cells, bn, scale, lr) for scale in s.init_scales]
      finals = [c['final_val_mean'] for c in cs]
      row[f'{name}_scales_reached_all_seeds'] = sum(c['reached'][t] == c['n'] for c in cs)
      row[f'{name}_final_val_spread'] = max(finals) - min(finals)
      row[f'{name}_final_val_min'] = min(finals)
    per_lr.append(row)
  return {
      'target': s.targets[t],
      'best_lr_per_init_scale': per_scale,
      'speedup_where_both_reach': {
          'cells': len(paired),
          'median': float(np.median(paired)) if paired else None,
          'min': min(paired) if paired else None,
          'max': max(paired) if paired else None},
      'sensitivity_per_lr': per_lr,
      'cells_reached_all_seeds': {
          'plain': sum(c['reached'][t] == c['n'] for c in cells if not c['batch_norm']),
          'bn': sum(c['reached'][t] == c['n'] for c in cells if c['batch_norm']),
          'of': len(s.init_scales) * len(s.learning_rates)},
  }


def plot_steps(results: dict[str, Any], path: str) -> None:
  """Heat maps of median steps to each target over init scale x lr, no BN | BN."""
  s, cells = results['settings'], results['cells']
  targets = s['targets']
  fig = mpl_figure.Figure(figsize=(9.5, 3.4 * len(targets) + 0.4), dpi=120,
                          layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  axes = fig.subplots(len(targets), 2, sharex=True, sharey=True, squeeze=False)
  finite = [v for c in cells for v in c['steps_median'] if v is not None]
  vmax = max(finite) if finite else 1.0
  cmap = matplotlib.colormaps['viridis_r'].with_extremes(bad='lightgray')
  for t, target in enumerate(targets):
    for ax, bn in zip(axes[t], (False, True)):
      grid = np.full((len(s['init_scales']), len(s['learning_rates'])), np.nan)
      for i, scale in enumerate(s['init_scales']):
        for j, lr in enumerate(s['learning_rates']):
          c = _cell(cells, bn, scale, lr)
          med = c['steps_median'][t]
          if med is not None:
            grid[i, j] = med
          text = 'not\nreached' if med is None else f'{med:.0f}'
          text += f"\n{c['reached'][t]}/{c['n']}"
          ax.text(j, i, text, ha='center', va='center', fontsize=8,
                  color='black' if med is None or med < 0.6 * vmax else 'white')
      im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=vmax,
                     aspect='auto')
      ax.set_xticks(range(len(s['learning_rates'])),
                    [f'{v:g}' for v in s['learning_rates']])
      ax.set_yticks(range(len(s['init_scales'])), [f'{v:g}' for v in s['init_scales']])
      ax.set_title(f"{'with' if bn else 'without'} BatchNorm: steps to "
                   f'{100 * target:g}% val', fontsize=10)
    axes[t, 0].set_ylabel('kernel init scale')
  for ax in axes[-1]:
    ax.set_xlabel('learning rate (SGD, momentum 0.9)')
  fig.colorbar(im, ax=axes, label='median steps to target', shrink=0.8)
  fig.suptitle(f"{results['data']['name']}, {results['data']['train_size']} training "
               f"examples, {results['steps_per_epoch']} steps/epoch; cell: median steps "
               '(a miss counts as slowest), seeds reaching / seeds', fontsize=10)
  fig.savefig(path, dpi=120)


def plot_curves(results: dict[str, Any], path: str) -> None:
  """Validation accuracy vs steps: rows no BN / BN, a panel per init scale, line per lr."""
  s = results['settings']
  spe = results['steps_per_epoch']
  scales, lrs = s['init_scales'], s['learning_rates']
  fig = mpl_figure.Figure(figsize=(2.9 * len(scales) + 0.6, 5.6), dpi=120,
                          layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  axes = fig.subplots(2, len(scales), sharex=True, sharey=True, squeeze=False)
  cmap = matplotlib.colormaps['viridis']
  for row, bn in enumerate((False, True)):
    for ax, scale in zip(axes[row], scales):
      for j, lr in enumerate(lrs):
        curves = [[np.nan if v is None else v for v in r['val_accuracy_curve']]
                  for r in results['runs']
                  if (r['batch_norm'], r['init_scale'], r['learning_rate'])
                  == (bn, scale, lr)]
        length = min(len(c) for c in curves)
        mean = np.mean([c[:length] for c in curves], axis=0)
        ax.plot(spe * (np.arange(length) + 1), 100 * mean, color=cmap(0.9 * j /
                max(len(lrs) - 1, 1)), lw=1.4, marker='x' if length < s['epochs'] else None,
                markevery=[length - 1], label=f'lr {lr:g}')
      for target in s['targets']:
        ax.axhline(100 * target, color='gray', lw=0.7, ls=':')
      ax.set_ylim(0, 100)
      ax.grid(True, alpha=0.3)
      ax.set_title(f"{'BN' if bn else 'no BN'}, init scale {scale:g}", fontsize=10)
    axes[row, 0].set_ylabel('val accuracy % (mean of seeds)')
  for ax in axes[-1]:
    ax.set_xlabel('steps')
  axes[0, 0].legend(fontsize=7, frameon=False, loc='center right')
  fig.suptitle('Validation accuracy while training; dotted: targets; x: the mean is cut '
               'where the first seed stopped on a non-finite loss', fontsize=10)
  fig.savefig(path, dpi=120)


def _steps_text(c: dict[str, Any], t: int) -> str:
  if c['steps_median'][t] is None:
    return f"— ({c['reached'][t]}/{c['n']})"
  return (f"{c['steps_median'][t]:.0f} [{c['steps_min'][t]}–{c['steps_max'][t]}] "
          f"({c['reached'][t]}/{c['n']})")


def markdown(results: dict[str, Any]) -> str:
  """The report: setting, the steps table, final accuracies and the two claims."""
  s, cells = results['settings'], results['cells']
  targets = s['targets']
  tnames = [f'{100 * t:g}%' for t in targets]
  lines = [
      '# Experiment 6: batch normalization, speed and sensitivity to initialization',
      '',
      f"{results['data']['name']}: {results['data']['train_size']} training, "
      f"{results['data']['val_size']} validation examples. MLP {list(s['widths'])}, "
      f"SGD momentum 0.9, batch {s['batch_size']} ({results['steps_per_epoch']} "
      f"steps/epoch), {s['epochs']} epochs, {s['seeds']} seeds per cell, no early "
      f"stopping. Targets: {', '.join(tnames)} validation accuracy. Runtime "
      f"{results.get('runtime_seconds', float('nan')) / 60:.1f} min wall clock "
      f"({results.get('cpu_seconds', float('nan')) / 60:.1f} min of CPU time) on "
      f"{results.get('machine', '?')}; 5-minute load average at the end "
      f"{results.get('load_average_5min', float('nan')):.1f}.",
      '',
      'Steps to target: median over seeds (a miss counts as slowest) [fastest–slowest '
      'seed that reached it] (seeds reached / seeds); — = the median run missed it. '
      'Final val: accuracy after the last epoch, mean ± sd (diverged runs count 0).',
      '',
      '| init scale | lr | ' + ' | '.join(f'no BN → {n} | BN → {n}' for n in tnames)
      + ' | no BN: final val % | BN: final val % |',
      '|---|---|' + '---|---|' * len(targets) + '---|---|',
  ]
  for scale in s['init_scales']:
    for lr in s['learning_rates']:
      a, b = _cell(cells, False, scale, lr), _cell(cells, True, scale, lr)

      def acc(c):
        sd = '' if c['final_val_std'] is None else f" ± {100 * c['final_val_std']:.2f}"
        div = f" ({c['diverged']} div.)" if c['diverged'] else ''
        return f"{100 * c['final_val_mean']:.2f}{sd}{div}"
      steps = ' | '.join(f'{_steps_text(a, t)} | {_steps_text(b, t)}'
                         for t in range(len(targets)))
      lines.append(f'| {scale:g} | {lr:g} | {steps} | {acc(a)} | {acc(b)} |')
  for cl, name in zip(results['claims'], tnames):
    sp, reach = cl['speedup_where_both_reach'], cl['cells_reached_all_seeds']
    lines += ['', f'**Target {name}.** Best learning rate per init scale (median steps, '
              'on validation). Paired: no-BN minus BN steps per seed, each arm at its best '
              'learning rate, a miss counted as one epoch past the budget; mean [95% CI], '
              'seeds where BN is faster, sign-flip p / Holm p over the init scales:',
              '', '| init scale | no BN: steps (lr) | BN: steps (lr) | paired: no BN - BN '
              'steps | BN faster | p / Holm p |', '|---|---|---|---|---|---|']
    for row in cl['best_lr_per_init_scale']:
      def best(key):
        if row[f'{key}_best_steps'] is None:
          return 'not reached'
        return f"{row[f'{key}_best_steps']:.0f} ({row[f'{key}_best_lr']:g})"
      pr = row.get('paired')
      if pr is None:
        paired = ['-', '-', '-']
      else:
        paired = [f"{pr['mean']:+.0f} [{pr['low']:+.0f}, {pr['high']:+.0f}]",
                  f"{pr['bn_faster_seeds']}/{pr['n']}",
                  f"{pr['p_value']:.2g} / {pr.get('p_adjusted', float('nan')):.2g}"
                  + (' *' if pr.get('p_adjusted', 1.0) < 0.05 else '')]
      lines.append(f"| {row['init_scale']:g} | {best('plain')} | {best('bn')} | "
                   + ' | '.join(paired) + ' |')
    if sp['cells']:
      lines += ['', f"Cells where both reach it: {sp['cells']}; no-BN steps / BN steps: "
                f"median {sp['median']:.2f} (range {sp['min']:.2f}–{sp['max']:.2f}; > 1: "
                'BN faster).']
    lines += ['', f"Cells where every seed reaches it: no BN {reach['plain']}/"
              f"{reach['of']}, BN {reach['bn']}/{reach['of']}. Per learning rate, init "
              'scales where every seed reaches it: ' + '; '.join(
                  f"lr {r['learning_rate']:g}: no BN {r['plain_scales_reached_all_seeds']}"
                  f", BN {r['bn_scales_reached_all_seeds']}"
                  for r in cl['sensitivity_per_lr']) + '.']
  lines += ['', 'Spread of the final validation accuracy over the init scales (max - min '
            'of the cell means, pp), per learning rate: ' + '; '.join(
                f"lr {r['learning_rate']:g}: no BN {100 * r['plain_final_val_spread']:.1f}"
                f", BN {100 * r['bn_final_val_spread']:.1f}"
                for r in results['claims'][0]['sensitivity_per_lr']) + '.']
  lines += ['', f'![steps]({STEPS_FIGURE})', '', f'![curves]({CURVES_FIGURE})', '']
  return '\n'.join(lines)



if __name__ == '__main__':
  common.script_main(run, default_seeds=8, seeds_help='Seeds per grid cell.', min_seeds=1)
