r"""Experiment 1: the classic notebook reproduced, then the same question done properly.

  python -m experiments.notebook_reproduction --out=/tmp/exp1 [--mnist_dir=DIR]
      [--seeds=8] [--smoke]

Part 1, the notebook exactly: MNIST, all 60,000 training images (no validation split),
Flatten -> Dense 128 relu -> Dropout 0.5 (or none) -> Dense 10, Adam 1e-3, batch 32,
5 epochs, the test set evaluated after every epoch (what Keras' `validation_data=
(x_test, y_test)` reports). max(--seeds, 8) seeds. Compared with the Keras numbers.

Part 2, done properly: 10% of the training pool held out for validation (seed k draws
its own split, data.split_seed = k); early stopping (patience 5, best weights restored)
within a longer budget; a wider and deeper network and a smaller training set. Each
cell compares the notebook's Dropout(0.5) with none, paired by seed, under four
selection rules (the notebook's 5 epochs, the last epoch of the budget, early stopping
on val_loss or on val_accuracy), all read off one full-length trajectory per run; the
four rules of a cell are one Holm family. The rate is the notebook's, not tuned here:
experiments/dropout.py tunes it on validation in the 5k regime.

Writes results.json, report.md and notebook_test_accuracy.png, proper_curves.png,
proper_effect.png into --out.
"""

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from experiments import common
from regjax import report
from regjax.data import load_dataset

NOTEBOOK_EPOCHS = 5
NOTEBOOK_MIN_SEEDS = 8
# Test accuracy after 5 epochs of the Keras original on this data (issue 4): about
# 97.4-97.8% without dropout and about 97.2% with Dropout(0.5).
KERAS_REFERENCE = {'none': (0.974, 0.978), 'dropout_0.5': (0.972, 0.972)}
VARIANTS = {'none': 0.0, 'dropout_0.5': 0.5}
PATIENCE = 5


@dataclasses.dataclass(frozen=True)
class Regime:
  """One cell of part 2: architecture, training-set size and epoch budget."""
  name: str
  title: str
  widths: tuple[int, ...]
  train_size: int  # 0 = the whole training split (54,000 after the validation split).
  epochs: int


REGIMES = (
    # Budgets keep the whole experiment near 15 CPU minutes with 8 seeds.
    Regime('mlp128_54k', 'MLP 128, 54k train', (128,), 0, 15),
    Regime('mlp128_5k', 'MLP 128, 5k train', (128,), 5000, 50),
    Regime('mlp512x2_5k', 'MLP 512-512, 5k train', (512, 512), 5000, 30),
)
SMOKE_REGIMES = (Regime('smoke', 'MLP 64, digits', (64,), 0, 8),)
RULES = {
    'epoch5': 'after 5 epochs (notebook length)',
    'last': 'last epoch of the budget (no early stopping)',
    'early_stop': f'early stopping (val_loss, patience {PATIENCE}, restore best)',
    'early_stop_acc': f'early stopping (val_accuracy, patience {PATIENCE}, restore best)',
}
RULE_LABELS = {'epoch5': 'epoch 5', 'last': 'last epoch', 'early_stop': 'ES on val_loss',
               'early_stop_acc': 'ES on val_accuracy'}


def _kept_epoch(rows: list[dict[str, float]], rule: str) -> tuple[int, int]:
  """(kept epoch, last epoch trained) of `rule` on one trajectory."""
  if rule == 'epoch5':
    e = min(NOTEBOOK_EPOCHS, len(rows)) - 1
    return e, e
  if rule == 'last':
    return len(rows) - 1, len(rows) - 1
  monitor = 'val_accuracy' if rule == 'early_stop_acc' else 'val_loss'
  es = common.simulate_early_stopping(rows, PATIENCE, monitor=monitor)
  return es['kept_epoch'], es['stop_epoch']


def notebook_part(base, smoke: bool, seeds: int, out: common.Outputs,
                  log: Callable[[str], None]) -> dict[str, Any]:
  """Part 1: the exact notebook run, test accuracy after each epoch."""
  cfg = common.override(base, data__validation_fraction=0.0,
                        early_stopping__enabled=False, train__epochs=NOTEBOOK_EPOCHS,
                        model__widths=(128,))
  data = load_dataset(cfg.data)
  curves: dict[str, list[list[dict[str, float]]]] = {}
  for variant, rate in VARIANTS.items():
    traj = common.Trajectory(common.override(cfg, model__dropout_rate=rate), data)
    curves[variant] = []
    for seed in range(seeds):
      rows, _ = traj.run(seed)
      curves[variant].append(rows)
      log(f'notebook {variant} seed {seed}: test acc per epoch '
          + ' '.join(f"{100 * r['test_accuracy']:.2f}" for r in rows))
  final = {v: [rows[-1]['test_accuracy'] for rows in c] for v, c in curves.items()}
  records = [common.record_at(rows, len(rows) - 1, v, s)
             for v, c in curves.items() for s, rows in enumerate(c)]
  summary = report.summarize(records, baseline='none')

  fig, axes = common.new_figure(1, 2, width=4.6, height=3.4)
  palette = {'none': 'tab:blue', 'dropout_0.5': 'tab:orange'}
  for ax, metric, label in ((axes[0, 0], 'test_accuracy', 'test accuracy (%)'),
                            (axes[0, 1], 'test_loss', 'test loss (nats)')):
    for variant, c in curves.items():
      scale = 100.0 if metric.endswith('accuracy') else 1.0
      epochs = np.arange(1, len(c[0]) + 1)
      for rows in c:
        ax.plot(epochs, [scale * r[metric] for r in rows], color=palette[variant],
                lw=0.6, alpha=0.5)
      mean = np.mean([[scale * r[metric] for r in rows] for rows in c], axis=0)
      ax.plot(epochs, mean, color=palette[variant], lw=2, marker='o', ms=3,
              label=f'{variant} (mean of {len(c)} seeds)')
      if metric == 'test_accuracy' and not smoke:
        lo, hi = KERAS_REFERENCE[variant]
        ax.errorbar([epochs[-1] + 0.15], [50 * (lo + hi)], yerr=[[50 * (hi - lo) + 0.02]],
                    fmt='s', color=palette[variant], mfc='white', capsize=3,
                    label=f'Keras original, {variant}')
    ax.set_xlabel('epoch')
    ax.set_ylabel(label)
    common.integer_x(ax)
  axes[0, 0].legend(fontsize=7, frameon=False)
  fig.suptitle(f'The notebook reproduced: {data.name} ({len(data.x_train):,} training '
               'images), MLP 128, Adam 1e-3, batch 32', fontsize=9)

  matches = {}
  for variant, values in final.items():
    lo, hi = KERAS_REFERENCE[variant]
    mean, sd = float(np.mean(values)), float(np.std(values, ddof=1))
    # Within noise: the reference range overlaps mean ± 2 sample std of our seeds.
    matches[variant] = bool(mean - 2 * sd <= hi and mean + 2 * sd >= lo)

  diff = next(r for r in summary if r['variant'] == 'dropout_0.5')
  out.add('## Part 1: the notebook, exactly',
          f'{seeds} seeds, all {len(data.x_train):,} training images, '
          f'{NOTEBOOK_EPOCHS} epochs; test accuracy (%) '
          'after each epoch (mean ± sample std over seeds):')
  body = []
  for variant, c in curves.items():
    body.append([variant] + [common.pm([rows[e]['test_accuracy'] for rows in c])
                             for e in range(len(c[0]))]
                + [f'{100 * KERAS_REFERENCE[variant][0]:.1f}'
                   + (f'-{100 * KERAS_REFERENCE[variant][1]:.1f}'
                      if KERAS_REFERENCE[variant][1] != KERAS_REFERENCE[variant][0] else ''),
                   'yes' if matches[variant] else 'no'])
  out.add(common.markdown_table(
      ['variant'] + [f'epoch {e + 1}' for e in range(len(curves['none'][0]))]
      + ['Keras (epoch 5)', 'matches within noise'], body))
  out.add(f"Dropout 0.5 minus none after epoch {len(curves['none'][0])}, paired by seed: "
          f'{common.diff_text(diff)} pp (95% CI), sign-flip p {diff["p_value"]:.2g}. '
          '"Matches within noise": the Keras value lies within mean ± 2 std of our seeds.')
  out.add(out.figure(fig, 'notebook_test_accuracy.png',
                     'Test accuracy and loss per epoch, thin lines: seeds; squares: Keras '
                     'original at epoch 5.'))
  return {'curves': {v: [[r['test_accuracy'] for r in rows] for rows in c]
                     for v, c in curves.items()},
          'test_loss_curves': {v: [[r['test_loss'] for r in rows] for rows in c]
                               for v, c in curves.items()},
          'final_test_accuracy': final, 'keras_reference': KERAS_REFERENCE,
          'matches_keras': matches, 'summary': summary, 'seeds': seeds}


def effect_figure(results: dict[str, Any], regimes) -> Any:
  """Forest plot: dropout 0.5 minus none (pp) with its paired 95% CI, per cell and rule.

  `results` is proper_part's output (or results.json['proper'], where NaN is null).
  """
  fig, ax = common.new_figure(1, 1, width=6.4, height=0.45 * len(regimes) * len(RULES) + 1)
  ax = ax[0, 0]
  labels = []
  rule_colors = {'epoch5': 'tab:gray', 'last': 'tab:red', 'early_stop': 'tab:green',
                 'early_stop_acc': 'tab:olive'}
  for regime in regimes:
    for rule in RULES:
      row = results[regime.name]['rules'][rule]['summary'][1]
      m = 100 * row['diff_mean']
      lo, hi = row['diff_ci_low'], row['diff_ci_high']
      if lo is not None and math.isfinite(lo):
        ax.errorbar([m], [len(labels)], xerr=[[m - 100 * lo], [100 * hi - m]], fmt='o',
                    color=rule_colors[rule], capsize=3)
      else:
        ax.plot([m], [len(labels)], 'o', color=rule_colors[rule])
      labels.append(f'{regime.title} | {RULE_LABELS[rule]}')
  ax.axvline(0, color='black', lw=0.8)
  ax.set_yticks(range(len(labels)), labels, fontsize=7)
  ax.invert_yaxis()
  ax.set_xlabel('dropout 0.5 minus none (pp of test accuracy)')
  ax.set_title('Effect of dropout, paired by seed, 95% CI', fontsize=9)
  return fig


def proper_part(base, smoke: bool, seeds: int, out: common.Outputs,
                log: Callable[[str], None]) -> dict[str, Any]:
  """Part 2: validation split, early stopping, wider nets, longer training, less data."""
  regimes = SMOKE_REGIMES if smoke else REGIMES
  results: dict[str, Any] = {}
  fig, axes = common.new_figure(len(regimes), 2, width=4.4, height=2.8)
  palette = {'none': 'tab:blue', 'dropout_0.5': 'tab:orange'}
  for i, regime in enumerate(regimes):
    cfg = common.override(base, data__train_size=regime.train_size,
                          model__widths=regime.widths, train__epochs=regime.epochs)
    datas = common.seed_splits(cfg, seeds)
    data = datas[0]
    trajs: dict[str, list] = {}
    for variant, rate in VARIANTS.items():
      trajs[variant] = []
      for seed in range(seeds):
        traj = common.Trajectory(common.override(cfg, model__dropout_rate=rate), datas[seed])
        rows, _ = traj.run(seed)
        trajs[variant].append(rows)
        es = common.simulate_early_stopping(rows, PATIENCE)
        log(f"{regime.name} {variant} seed {seed}: best val epoch {es['best_epoch']}, "
            f"stop {es['stop_epoch']}, test {100 * rows[es['kept_epoch']]['test_accuracy']:.2f}%"
            f" (last {100 * rows[-1]['test_accuracy']:.2f}%), "
            f"{np.mean([r['seconds'] for r in rows]):.2f} s/epoch")
    cell = {'n_train': len(data.x_train), 'widths': list(regime.widths),
            'epochs': regime.epochs, 'rules': {}}
    for rule in RULES:
      records = []
      for variant, runs in trajs.items():
        for seed, rows in enumerate(runs):
          kept, stop = _kept_epoch(rows, rule)
          records.append(common.record_at(rows, kept, variant, seed, stop_epoch=stop))
      cell['rules'][rule] = {'summary': report.summarize(records, baseline='none'),
                             'records': records}
    # The cell's four rules are one family: Holm over them.
    common.holm_over([cell['rules'][rule]['summary'][1] for rule in RULES])
    cell['curves'] = {v: [{k: [r[k] for r in rows] for k in
                           ('val_loss', 'val_accuracy', 'test_accuracy', 'trainset_accuracy')}
                          for rows in runs] for v, runs in trajs.items()}
    results[regime.name] = cell

    for j, (metric, label) in enumerate((('val_loss', 'validation loss (nats)'),
                                         ('test_accuracy', 'test accuracy (%)'))):
      ax = axes[i, j]
      scale = 100.0 if metric.endswith('accuracy') else 1.0
      for variant, runs in trajs.items():
        mean, low, high = common.curve_band([[scale * r[metric] for r in rows]
                                             for rows in runs])
        epochs = np.arange(1, len(mean) + 1)
        ax.plot(epochs, mean, color=palette[variant], lw=1.6, label=variant)
        ax.fill_between(epochs, low, high, color=palette[variant], alpha=0.2, lw=0)
        for rows in runs:
          kept, _ = _kept_epoch(rows, 'early_stop')  # The default monitor, val_loss.
          ax.plot([kept + 1], [scale * rows[kept][metric]], 'v', color=palette[variant],
                  mec='black', mew=0.5, ms=5)
      ax.set_title(regime.title, fontsize=9)
      common.integer_x(ax)
      ax.set_xlabel('epoch')
      ax.set_ylabel(label)
      if metric == 'test_accuracy':
        finals = [scale * r[metric] for runs in trajs.values() for rows in runs for r in rows]
        top = max(finals)
        ax.set_ylim(max(min(finals), top - 4), top + 0.3)
  axes[0, 0].legend(fontsize=8, frameon=False)
  fig.suptitle('Dropout 0.5 vs none with a validation split: mean over seeds, band = '
               'min-max, ▼ = each seed\'s early-stopped (val_loss) epoch', fontsize=9)

  fx = effect_figure(results, regimes)

  out.add('## Part 2: the same question done properly',
          '10% of the 60,000 training images are the validation split (6,000); the '
          'training split is the remaining 54,000 or 5,000 of them. Early stopping '
          f'watches val_loss (or val_accuracy) with patience {PATIENCE} and restores the '
          'best weights; each run trains its whole budget once and every rule is read off '
          'that trajectory (the rules choose epochs by validation metrics only, never by '
          'test metrics). Seed k draws its own validation split and training subset. Test '
          f'accuracy (%), mean ± sample std over {seeds} seeds; Δ = dropout 0.5 minus none, '
          'paired by seed, with its 95% t-interval; p: sign-flip p / Holm p over the four '
          'rules of the cell (* = Holm p < 0.05).')
  body = []
  for regime in regimes:
    for rule, text in RULES.items():
      rows = results[regime.name]['rules'][rule]['summary']
      recs = results[regime.name]['rules'][rule]['records']
      base, drop = rows[0], rows[1]
      ep = {v: np.mean([r['best_epoch'] for r in recs if r['variant'] == v]) + 1
            for v in VARIANTS}
      body.append([regime.title, text,
                   f"{100 * base['test_acc_mean']:.2f} ± {100 * base['test_acc_std']:.2f}",
                   f"{100 * drop['test_acc_mean']:.2f} ± {100 * drop['test_acc_std']:.2f}",
                   common.diff_text(drop), common.p_text(drop),
                   f"{ep['none']:.1f} / {ep['dropout_0.5']:.1f}",
                   f"{100 * base['gap_mean']:+.2f} / {100 * drop['gap_mean']:+.2f}"])
  out.add(common.markdown_table(
      ['cell', 'rule', 'none %', 'dropout 0.5 %', 'Δ pp (95% CI)', 'p / Holm p',
       'epochs kept (none / dropout)', 'train-test gap pp (none / dropout)'], body))
  out.add(out.figure(fig, 'proper_curves.png',
                     'Validation loss and test accuracy per epoch for each cell.'),
          out.figure(fx, 'proper_effect.png',
                     'Effect of dropout 0.5 on test accuracy per cell and selection rule.'))
  return results


def run(out_dir: str, mnist_dir: str, smoke: bool, seeds: int,
        log: Callable[[str], None] = common.log) -> dict[str, Any]:
  """Runs both parts and writes results.json, report.md and the figures to `out_dir`."""
  out = common.Outputs(out_dir, 'Experiment 1: the notebook reproduced, then done properly')
  base = common.base_config(smoke, mnist_dir)
  nb_seeds = seeds if smoke else max(seeds, NOTEBOOK_MIN_SEEDS)
  out.results['notebook'] = notebook_part(base, smoke, nb_seeds, out, log)
  out.results['proper'] = proper_part(base, smoke, seeds, out, log)
  out.results['settings'] = {'data': base.data.name, 'data_dir': base.data.dir,
                             'seeds': seeds, 'patience': PATIENCE, 'smoke': smoke}
  out.write()
  return out.results



if __name__ == '__main__':
  common.script_main(run, default_seeds=8)
