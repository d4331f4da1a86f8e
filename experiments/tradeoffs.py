r"""Experiment 7: what each regularizer costs in time, and how touchy its knob is.

  python -m experiments.tradeoffs --out=/tmp/tradeoffs [--mnist_dir=DIR] [--smoke] \
      [--seeds=N]

Part 1, cost. Each regularizer at a typical strength is trained for a few epochs in
several rounds; every round compiles its program afresh (so its compile time is measured
again) and the regularizers run in a new random order each round, so that load on the
shared machine drifts over all of them alike. A run's time is the minimum of its epochs'
wall-clock seconds, the first epoch left out as warm-up (on a shared machine other
processes only ever add time, so the minimum is the least disturbed estimate, as
`timeit` advises); the overhead of a regularizer is its time divided by the plain run's
time in the same round (paired), reported as the median and the range over rounds.
Every run evaluates the validation split after each epoch (regjax's program always
does), so
'early_stopping' adds only the stopper's bookkeeping (tracking the best epoch and
keeping a copy of its weights); 'none_no_val' drops the validation split to show what
that per-epoch evaluation itself costs.

Part 2, sensitivity. Test accuracy against each regularizer's strength on a grid
(mostly log-spaced), `--seeds` seeds per point (seed k on its own split, data.split_seed
= k), fixed epochs and no early stopping (except in the early-stopping row, whose knob
is the patience). Summary per knob: the range of the mean test accuracy over the grid;
the grid point with the best mean VALIDATION accuracy and the width of the contiguous
interval around it whose mean validation accuracy is within 0.5 pp of it (in decades
for log-spaced knobs, in rate units for the dropout rate). The headline: each knob at
the value chosen per seed on validation accuracy (the test set never chooses) against
no regularizer, paired by seed, Holm over the knobs.

Outputs in --out: results.json, tradeoffs_cost.png, tradeoffs_sensitivity.png, report.md.
"""

import dataclasses
import math
import os
from pathlib import Path
import time
from typing import Any

from matplotlib import figure as mpl_figure
from matplotlib import ticker
from matplotlib.backends import backend_agg
import ml_collections
import numpy as np

from regjax import report
from regjax import schema
from regjax import train
from regjax.data import load_dataset
from regjax.errors import ConfigError
from experiments import common

COST_FIGURE = 'tradeoffs_cost.png'
SENSITIVITY_FIGURE = 'tradeoffs_sensitivity.png'
TOLERANCE = 0.005  # "Within 0.5 pp of the best" (accuracy as a fraction).

# Regularizer name -> config overrides at a typical strength (the cost part).
COST_VARIANTS: dict[str, dict[str, Any]] = {
    'none': {},
    'l2_penalty': {'penalty.l2': 1e-4},
    'weight_decay': {'optimizer.weight_decay': 1e-1},
    'l1_prox': {'optimizer.l1_prox': 1e-2},
    'dropout_0.5': {'model.dropout_rate': 0.5},
    'batch_norm': {'model.batch_norm': True},
    'max_norm': {'optimizer.max_norm': 2.0},
    'early_stopping': {'early_stopping.enabled': True, 'early_stopping.patience': 1000},
    'none_no_val': {'data.validation_fraction': 0.0,
                    'early_stopping.monitor': 'train_loss'},
}


@dataclasses.dataclass(frozen=True)
class Knob:
  """One sensitivity sweep: `field` takes each of `values`; `log` = log-spaced grid."""
  name: str
  field: str
  values: tuple[float, ...]
  log: bool = True
  extra: tuple[tuple[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True)
class Settings:
  """Sizes of both parts (cost: cost_*; sensitivity: the rest)."""
  dataset: str
  cost_train_size: int
  cost_widths: tuple[int, ...]
  cost_epochs: int
  cost_rounds: int
  cost_variants: tuple[str, ...]
  train_size: int
  widths: tuple[int, ...]
  epochs: int
  knobs: tuple[Knob, ...]
  seeds: int


def _full_knobs() -> tuple[Knob, ...]:
  return (
      Knob('l2_penalty', 'penalty.l2', (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)),
      Knob('weight_decay', 'optimizer.weight_decay', (1e-2, 1e-1, 1.0, 10.0, 100.0)),
      Knob('l1_prox', 'optimizer.l1_prox', (1e-4, 1e-3, 1e-2, 1e-1, 1.0)),
      Knob('dropout', 'model.dropout_rate', (0.1, 0.3, 0.5, 0.7, 0.9), log=False),
      Knob('max_norm', 'optimizer.max_norm', (0.25, 0.5, 1.0, 2.0, 4.0)),
      Knob('early_stopping_patience', 'early_stopping.patience', (1, 2, 5, 10, 20),
           extra=(('early_stopping.enabled', True), ('train.epochs', 40))),
  )


def make_settings(smoke: bool, seeds: int) -> Settings:
  """The full MNIST run, or a seconds-long one on digits for tests."""
  if seeds < 1:
    raise ConfigError('seeds', seeds, 'must be >= 1')
  if smoke:
    return Settings(dataset='digits', cost_train_size=300, cost_widths=(16,), cost_epochs=3,
                    cost_rounds=1, cost_variants=('none', 'l2_penalty'), train_size=300,
                    widths=(16,), epochs=2, knobs=(Knob('l2_penalty', 'penalty.l2', (1e-3, 1e-1)),),
                    seeds=seeds)
  return Settings(dataset='mnist', cost_train_size=5000, cost_widths=(256, 256),
                  cost_epochs=5, cost_rounds=5,
                  cost_variants=tuple(COST_VARIANTS), train_size=2000,
                  widths=(256, 256), epochs=20, knobs=_full_knobs(), seeds=seeds)


def make_config(s: Settings, mnist_dir: str, train_size: int, widths: tuple[int, ...],
                epochs: int, overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """The base config (MLP, Adam 1e-3, batch 32, no early stopping) plus overrides."""
  c = schema.default_config()
  c.data.name = s.dataset
  c.data.dir = mnist_dir if s.dataset == 'mnist' else ''
  c.data.train_size = train_size
  c.data.validation_fraction = 0.05 if s.dataset == 'mnist' else 0.2
  c.model.widths = widths
  c.train.epochs = epochs
  c.early_stopping.enabled = False
  for dotted, value in overrides.items():
    section, key = dotted.split('.')
    c[section][key] = value
  return c


def cost_part(s: Settings, mnist_dir: str) -> list[dict[str, Any]]:
  """Runs every cost variant once per round; one record per (round, variant)."""
  rng = np.random.default_rng(0)
  rows = []
  for rnd in range(s.cost_rounds):
    for name in rng.permutation(s.cost_variants):
      config = make_config(s, mnist_dir, s.cost_train_size, s.cost_widths, s.cost_epochs,
                           COST_VARIANTS[name])
      data = load_dataset(config.data)
      ((record, history, _),) = train.RunGroup([train.Run(config, rnd, data)],
                                               reuse_compiled=False).fit()
      epoch_seconds = [r['seconds'] for r in history]
      rows.append({'round': rnd, 'variant': str(name),
                   'epoch_seconds': epoch_seconds,
                   'seconds': float(np.min(epoch_seconds[1:] or epoch_seconds)),
                   'seconds_median': float(np.median(epoch_seconds[1:] or epoch_seconds)),
                   'seconds_per_epoch': record['seconds_per_epoch'],
                   'compile_seconds': record['compile_seconds'],
                   'test_accuracy': record['test_accuracy']})
    print(f'cost round {rnd} done', flush=True)
  return rows


def summarize_cost(rows: list[dict[str, Any]], variants: tuple[str, ...]
                   ) -> list[dict[str, Any]]:
  """Per variant: seconds/epoch and compile seconds over rounds; ratio to 'none' paired."""
  base = {r['round']: r['seconds'] for r in rows if r['variant'] == 'none'}
  out = []
  for name in variants:
    rs = [r for r in rows if r['variant'] == name]
    secs = np.array([r['seconds'] for r in rs])
    comp = np.array([r['compile_seconds'] for r in rs])
    ratios = np.array([r['seconds'] / base[r['round']] for r in rs if r['round'] in base])
    out.append({
        'variant': name, 'rounds': len(rs),
        'seconds_mean': float(secs.mean()),
        'seconds_std': float(secs.std(ddof=1)) if len(secs) > 1 else None,
        'compile_mean': float(comp.mean()),
        'compile_std': float(comp.std(ddof=1)) if len(comp) > 1 else None,
        'ratio_median': float(np.median(ratios)) if len(ratios) else None,
        'ratio_min': float(ratios.min()) if len(ratios) else None,
        'ratio_max': float(ratios.max()) if len(ratios) else None,
    })
  return out


def sensitivity_part(s: Settings, mnist_dir: str) -> list[dict[str, Any]]:
  """Trains every knob value (and the unregularized reference) for every seed."""
  datas = None
  rows = []
  sweeps = [('none', '', 0.0, {})]
  for knob in s.knobs:
    for v in knob.values:
      sweeps.append((knob.name, knob.field, v, {knob.field: v, **dict(knob.extra)}))
  for name, field, value, overrides in sweeps:
    config = make_config(s, mnist_dir, s.train_size, s.widths, s.epochs, overrides)
    if datas is None:
      # Seed k's split, shared by every sweep point of seed k.
      datas = common.seed_splits(config, s.seeds)
    for seed in range(s.seeds):
      record, _, _ = train.fit(config, datas[seed], seed)
      rows.append({'knob': name, 'field': field, 'value': value, 'seed': seed,
                   'test_accuracy': record['test_accuracy'],
                   'val_accuracy': record['val_accuracy'],
                   'train_accuracy': record['train_accuracy'],
                   'epochs_run': record['epochs_run'],
                   'zero_fraction': record['zero_fraction'],
                   'diverged': record['diverged']})
    print(f'{name} {value:g} done', flush=True)
  return rows


def _finite(v: Any) -> float:
  return v if v is not None and math.isfinite(v) else 0.0


def summarize_knob(knob: Knob, rows: list[dict[str, Any]]) -> dict[str, Any]:
  """Mean/sd test and validation accuracy per grid value, the range and the width.

  The best point and the within-0.5-pp interval are found on the mean VALIDATION
  accuracy (the test set chooses nothing); the range is that of the mean test accuracy.
  A diverged run counts as accuracy 0 (it is a failure of that setting).
  """
  means, stds, val_means = [], [], []
  for v in knob.values:
    point = [r for r in rows if r['knob'] == knob.name and r['value'] == v]
    acc = [_finite(r['test_accuracy']) for r in point]
    means.append(float(np.mean(acc)))
    stds.append(float(np.std(acc, ddof=1)) if len(acc) > 1 else None)
    val_means.append(float(np.mean([_finite(r['val_accuracy']) for r in point])))
  best = int(np.argmax(val_means))
  lo = hi = best
  while lo > 0 and val_means[lo - 1] >= val_means[best] - TOLERANCE:
    lo -= 1
  while hi < len(val_means) - 1 and val_means[hi + 1] >= val_means[best] - TOLERANCE:
    hi += 1
  a, b = knob.values[lo], knob.values[hi]
  width = math.log10(b / a) if knob.log else b - a
  return {
      'knob': knob.name, 'field': knob.field, 'values': list(knob.values),
      'log_grid': knob.log, 'test_acc_mean': means, 'test_acc_std': stds,
      'val_acc_mean': val_means,
      'best_value': knob.values[best], 'best_mean': means[best],
      'best_std': stds[best], 'best_val_mean': val_means[best],
      'range': max(means) - min(means),
      'within_tolerance_from': a, 'within_tolerance_to': b,
      'within_tolerance_width': width,
      'width_unit': 'decades' if knob.log else 'rate',
      'points_within_tolerance': sum(m >= val_means[best] - TOLERANCE for m in val_means),
  }


def tuned_comparison(knobs: tuple[Knob, ...], rows: list[dict[str, Any]]
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
  """Each knob at its value chosen per seed on validation accuracy, against none.

  Returns (summary rows of report.summarize, Holm over the knobs; the tuned records,
  each with 'chosen').
  """
  def record(r, variant):
    return {'variant': variant, 'seed': r['seed'], 'test_accuracy': r['test_accuracy'],
            'val_accuracy': r['val_accuracy'], 'train_accuracy': r['train_accuracy'],
            'diverged': r['diverged'], 'value': r['value']}

  records = [record(r, 'none') for r in rows if r['knob'] == 'none']
  seeds = sorted(r['seed'] for r in records)
  for knob in knobs:
    by_value = {v: [record(next(r for r in rows if r['knob'] == knob.name
                                and r['value'] == v and r['seed'] == k), knob.name)
                    for k in seeds] for v in knob.values}
    records += common.choose_per_seed(by_value, knob.name)
  return report.summarize(records, baseline='none'), records


def run(out: str, mnist_dir: str = '', smoke: bool = False, seeds: int = 8
        ) -> dict[str, Any]:
  """Runs both parts, writes results.json, the figures and report.md into `out`."""
  t_start, c_start = time.perf_counter(), time.process_time()
  s = make_settings(smoke, seeds)
  cost_rows = cost_part(s, mnist_dir)
  t_cost = time.perf_counter() - t_start
  sens_rows = sensitivity_part(s, mnist_dir)
  none = [_finite(r['test_accuracy']) for r in sens_rows if r['knob'] == 'none']
  results = {
      'settings': dataclasses.asdict(s),
      'cost_runs': cost_rows,
      'cost': summarize_cost(cost_rows, s.cost_variants),
      'sensitivity_runs': sens_rows,
      'none_test_acc_mean': float(np.mean(none)),
      'none_test_acc_std': float(np.std(none, ddof=1)) if len(none) > 1 else None,
      'sensitivity': [summarize_knob(k, sens_rows) for k in s.knobs],
      'cost_seconds': t_cost,
  }
  results['tuned_summary'], results['tuned_records'] = tuned_comparison(s.knobs, sens_rows)
  results.update(runtime_seconds=time.perf_counter() - t_start,
                 cpu_seconds=time.process_time() - c_start,
                 load_average_5min=os.getloadavg()[1], machine=common.machine())
  out_dir = Path(out)
  out_dir.mkdir(parents=True, exist_ok=True)
  report.atomic_write_json(str(out_dir / 'results.json'), results)
  plot_cost(results, str(out_dir / COST_FIGURE))
  plot_sensitivity(results, str(out_dir / SENSITIVITY_FIGURE))
  report.atomic_write_text(str(out_dir / 'report.md'), markdown(results))
  return results


def plot_cost(results: dict[str, Any], path: str) -> None:
  """Per variant: epoch time relative to none (paired by round) and compile seconds."""
  cost = results['cost']
  names = [c['variant'] for c in cost]
  fig = mpl_figure.Figure(figsize=(10, 3.8), dpi=120, layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  ax1, ax2 = fig.subplots(1, 2)
  y = np.arange(len(names))
  med = np.array([c['ratio_median'] for c in cost], dtype=float)
  lo = np.array([c['ratio_min'] for c in cost], dtype=float)
  hi = np.array([c['ratio_max'] for c in cost], dtype=float)
  ax1.barh(y, med, color='tab:blue', alpha=0.7)
  ax1.errorbar(med, y, xerr=[med - lo, hi - med], fmt='none', ecolor='black', capsize=3)
  for rnd in sorted({r['round'] for r in results['cost_runs']}):
    base = next(r['seconds'] for r in results['cost_runs']
                if r['round'] == rnd and r['variant'] == 'none')
    xs = [next(r['seconds'] for r in results['cost_runs']
               if r['round'] == rnd and r['variant'] == n) / base for n in names]
    ax1.plot(xs, y, 'k.', ms=4)
  ax1.axvline(1.0, color='gray', lw=0.8)
  ax1.set_yticks(y, names)
  ax1.invert_yaxis()
  ax1.set_xlabel('min seconds per epoch / none (same round)')
  ax1.set_title('epoch time: bar = median, whiskers = range, dots = rounds', fontsize=9)
  cm = np.array([c['compile_mean'] for c in cost])
  cs = np.array([c['compile_std'] or 0.0 for c in cost])
  ax2.barh(y, cm, xerr=cs, color='tab:orange', alpha=0.7, capsize=3)
  ax2.set_yticks(y, names)
  ax2.invert_yaxis()
  ax2.set_xlabel('compile seconds (mean ± sd over rounds)')
  ax2.set_title('one-off compilation of the epoch', fontsize=9)
  s = results['settings']
  fig.suptitle(f"MLP {list(s['cost_widths'])}, {s['cost_train_size']} training examples, "
               f"batch 32; {s['cost_rounds']} rounds of {s['cost_epochs']} epochs (first "
               'epoch dropped); shared 2-core CPU', fontsize=10)
  fig.savefig(path, dpi=120)


def plot_sensitivity(results: dict[str, Any], path: str) -> None:
  """Test accuracy vs strength per knob (mean ± sd over seeds), unregularized line."""
  sens = results['sensitivity']
  ncols = min(3, len(sens))
  nrows = math.ceil(len(sens) / ncols)
  fig = mpl_figure.Figure(figsize=(3.6 * ncols, 3.0 * nrows + 0.4), dpi=120,
                          layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
  none_m = 100 * results['none_test_acc_mean']
  for ax, k in zip(axes, sens):
    m = 100 * np.array(k['test_acc_mean'])
    sd = 100 * np.array([v or 0.0 for v in k['test_acc_std']])
    ax.errorbar(k['values'], m, yerr=sd, marker='o', ms=4, capsize=3, lw=1.5)
    ax.axhline(none_m, color='gray', ls='--', lw=1, label='no regularizer')
    ax.plot(k['values'], 100 * np.array(k['val_acc_mean']), ls=':', marker='x', ms=4,
            color='tab:purple', lw=1, label='validation (mean)')
    ax.plot([k['best_value']], [100 * k['best_mean']], marker='*', ms=11, color='tab:red',
            ls='none', label='best on validation')
    if k['log_grid']:
      ax.set_xscale('log')
      ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xticks(k['values'], [f'{v:g}' for v in k['values']])
    ax.set_xlabel(k['field'])
    ax.set_title(f"{k['knob']}: range {100 * k['range']:.1f} pp", fontsize=9)
    top = max(none_m, float(np.max(m + sd)))
    ax.set_ylim(max(0.0, min(float(np.min(m - sd)), none_m) - 1.0), top + 0.5)
    ax.grid(True, alpha=0.3)
  for ax in axes[len(sens):]:
    ax.set_visible(False)
  axes[0].set_ylabel('test accuracy %')
  axes[0].legend(fontsize=7, frameon=False)
  s = results['settings']
  fig.suptitle(f"MLP {list(s['widths'])}, {s['train_size']} training examples, "
               f"{s['epochs']} epochs; mean ± sd over {s['seeds']} seeds", fontsize=10)
  fig.savefig(path, dpi=120)


def _pm(mean: float | None, sd: float | None, scale: float = 1.0, fmt: str = '.3f') -> str:
  if mean is None:
    return 'n/a'
  text = format(mean * scale, fmt)
  return text + ('' if sd is None else f' ± {format(sd * scale, fmt)}')


def markdown(results: dict[str, Any]) -> str:
  """The report: both tables and the figures."""
  s = results['settings']
  lines = [
      '# Experiment 7: tradeoffs, cost and sensitivity of each regularizer',
      '',
      f"Runtime {results['runtime_seconds'] / 60:.1f} min wall clock "
      f"({results['cpu_seconds'] / 60:.1f} min of CPU time; cost part "
      f"{results['cost_seconds']:.0f} s wall) on {results['machine']}; 5-minute load "
      f"average at the end {results['load_average_5min']:.1f}.",
      '',
      f"## Cost per epoch (MLP {list(s['cost_widths'])}, {s['cost_train_size']} "
      f"training examples, batch 32, {s['cost_rounds']} rounds x {s['cost_epochs']} "
      'epochs; a run\'s time: the fastest epoch after the first)',
      '',
      '| regularizer | s/epoch (mean ± sd over rounds) | / none, same round: median '
      '[min, max] | compile s (mean ± sd) |',
      '|---|---|---|---|',
  ]
  for c in results['cost']:
    ratio = ('n/a' if c['ratio_median'] is None else
             f"{c['ratio_median']:.2f} [{c['ratio_min']:.2f}, {c['ratio_max']:.2f}]")
    lines.append(f"| {c['variant']} | {_pm(c['seconds_mean'], c['seconds_std'])} | "
                 f"{ratio} | {_pm(c['compile_mean'], c['compile_std'], fmt='.2f')} |")
  lines += [
      '',
      f"## Sensitivity (MLP {list(s['widths'])}, {s['train_size']} training examples, "
      f"{s['epochs']} epochs, {s['seeds']} seeds)",
      '',
      'No regularizer: test accuracy '
      f"{_pm(results['none_test_acc_mean'], results['none_test_acc_std'], 100, '.2f')} %.",
      '',
      'Per grid value: test accuracy (mean ± sd) and, in brackets, the mean validation '
      'accuracy. "Best on validation": the grid value with the highest mean validation '
      'accuracy (its test accuracy); "within 0.5 pp": the contiguous grid interval around '
      'it whose mean validation accuracy is within 0.5 pp; "range": max - min of the mean '
      'test accuracy over the grid.',
      '',
      '| knob | grid | test acc % [val acc %] per grid value | best on validation | '
      'range pp | within 0.5 pp of best (validation) |',
      '|---|---|---|---|---|---|',
  ]
  for k in results['sensitivity']:
    accs = ', '.join(f"{_pm(m, sd, 100, '.2f')} [{100 * v:.2f}]" for m, sd, v in
                     zip(k['test_acc_mean'], k['test_acc_std'], k['val_acc_mean']))
    unit = 'decades' if k['log_grid'] else 'in rate'
    lines.append(
        f"| {k['knob']} | {', '.join(f'{v:g}' for v in k['values'])} | {accs} | "
        f"{100 * k['best_mean']:.2f} at {k['best_value']:g} | {100 * k['range']:.2f} | "
        f"{k['within_tolerance_from']:g}–{k['within_tolerance_to']:g} "
        f"({k['within_tolerance_width']:.2g} {unit}; {k['points_within_tolerance']}/"
        f"{len(k['values'])} points) |")
  lines += ['', '## Tuned: each knob at the value chosen per seed on validation accuracy',
            '',
            'Test accuracy % (mean ± sd); Δ vs no regularizer paired by seed, 95% '
            't-interval; p: sign-flip p / Holm p over the knobs (* = Holm p < 0.05); '
            'chosen: median [min, max] over seeds.', '',
            '| knob | chosen | test acc % | Δ vs none pp (95% CI) | p / Holm p |',
            '|---|---|---|---|---|']
  for row in results['tuned_summary']:
    rs = [r for r in results['tuned_records'] if r['variant'] == row['variant']]
    chosen = common.chosen_text(rs) if 'chosen' in rs[0] else '-'
    lines.append(f"| {row['variant']} | {chosen} | "
                 f"{_pm(row['test_acc_mean'], row['test_acc_std'], 100, '.2f')} | "
                 f"{common.diff_text(row)} | {common.p_text(row)} |")
  lines += ['', f'![cost]({COST_FIGURE})', '', f'![sensitivity]({SENSITIVITY_FIGURE})', '']
  return '\n'.join(lines)



if __name__ == '__main__':
  common.script_main(
      run, default_seeds=8, min_seeds=1,
      seeds_help='Seeds per sensitivity point (timing: 5 rounds).')
