r"""Experiment 8: memorizing random labels (Zhang et al. 2017), and what stops it.

  python -m experiments.memorization --out=/tmp/memorization [--mnist_dir=DIR] \
      [--smoke] [--seeds=N]

A wide MLP trains for a fixed number of epochs, without early stopping, on an MNIST
subset whose training labels are partly or fully random (`data.label_noise`: that share
of the training examples gets a class drawn uniformly from all 10, which keeps the true
class one time in ten, so 1.0 means labels independent of the images and 0.5 changes
about 45% of them). Validation and test labels stay clean.

  1. Fit: after every epoch the network is evaluated in inference mode (dropout off) on
     the training set with its noisy labels; "time to fit" is the first epoch at which
     that accuracy reaches 99%. "Memorized" is the share of the examples whose label was
     changed that the network predicts as their (wrong) noisy label.
  2. Regularizers (L2 penalty, dropout, decoupled weight decay) at one typical strength,
     at a few noise levels: do they slow the fit, or stop it?
  3. Early stopping on the clean validation loss (`regjax.train.fit` with patience 10,
     best weights restored), paired by seed with the run that trains to the end: the
     epoch it keeps, test accuracy there vs at the end, and how much of the noise was
     memorized at each.

Every run is regjax's one training program (regjax/program.py). The fixed-epoch runs
add the per-epoch scores as the program's extra evaluation sets (`eval_sets`: the
training set, and the changed examples against their noisy and their true labels); the
validation curve is the program's own. So the early-stopped run with seed k follows
the same path as the full run with seed k until it stops.

Outputs in --out: results.json, memorization_fit.png, memorization_regularizers.png,
memorization_early_stopping.png, report.md.
"""

import dataclasses
from pathlib import Path
import time
from typing import Any

import jax
import matplotlib
from matplotlib import figure as mpl_figure
from matplotlib.backends import backend_agg
import ml_collections
import numpy as np

from regjax import report
from regjax import schema
from regjax import train
from regjax import trainer as trainer_lib
from regjax.data import Dataset, load_dataset
from regjax.errors import ConfigError
from regjax.program import EvalSet
from experiments import common

FIT_FIGURE = 'memorization_fit.png'
REG_FIGURE = 'memorization_regularizers.png'
ES_FIGURE = 'memorization_early_stopping.png'
FIT_THRESHOLD = 0.99  # Training accuracy on the noisy labels that counts as "fitted".
MEMORIZE_THRESHOLD = 0.9  # Share of changed labels memorized that counts as "mostly".


@dataclasses.dataclass(frozen=True)
class Settings:
  """Sizes. regularizers: name -> config overrides; reg_noise: noise levels they see."""
  dataset: str
  train_size: int
  validation_fraction: float
  widths: tuple[int, ...]
  noise_levels: tuple[float, ...]
  epochs: int
  seeds: int
  regularizers: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
  reg_noise: tuple[float, ...]
  patience: int


def make_settings(smoke: bool, seeds: int) -> Settings:
  """The full MNIST run, or a seconds-long one on digits for tests."""
  if seeds < 1:
    raise ConfigError('seeds', seeds, 'must be >= 1')
  if smoke:
    return Settings(dataset='digits', train_size=200, validation_fraction=0.2,
                    widths=(32,), noise_levels=(1.0,), epochs=4, seeds=seeds,
                    regularizers=(('dropout_0.5', (('model.dropout_rate', 0.5),)),),
                    reg_noise=(1.0,), patience=1)
  return Settings(
      dataset='mnist', train_size=2000, validation_fraction=0.05, widths=(512,),
      noise_levels=(0.0, 0.2, 0.5, 0.8, 1.0), epochs=80, seeds=seeds,
      regularizers=(('l2_1e-3', (('penalty.l2', 1e-3),)),
                    ('dropout_0.5', (('model.dropout_rate', 0.5),)),
                    ('weight_decay_1', (('optimizer.weight_decay', 1.0),))),
      reg_noise=(0.0, 0.5, 1.0), patience=10)


def make_config(s: Settings, mnist_dir: str, noise: float,
                overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """MLP, Adam 1e-3, batch 32, fixed epochs, no early stopping, plus overrides."""
  c = schema.default_config()
  c.data.name = s.dataset
  c.data.dir = mnist_dir if s.dataset == 'mnist' else ''
  c.data.train_size = s.train_size
  c.data.validation_fraction = s.validation_fraction
  c.data.label_noise = noise
  c.model.widths = s.widths
  c.train.epochs = s.epochs
  c.early_stopping.enabled = False
  c.early_stopping.patience = s.patience
  for dotted, value in overrides.items():
    section, key = dotted.split('.')
    c[section][key] = value
  return c


def epochs_to_fit(curve: list[float], threshold: float = FIT_THRESHOLD) -> int | None:
  """1-based epochs until the accuracy curve first reaches threshold; None if never."""
  for epoch, acc in enumerate(curve):
    if acc >= threshold:
      return epoch + 1
  return None


def changed_rows(data: Dataset) -> np.ndarray:
  """Positions in the training split whose label noise changed the class, (n_changed,)."""
  return np.flatnonzero(data.y_train != data.y_train_clean)


def eval_sets(data: Dataset) -> list[EvalSet]:
  """The per-epoch scores of a trajectory as the program's extra evaluation sets.

  'trainset': every training example against its (noisy) training label; 'changed': the
  examples whose label was changed, against the noisy label (memorized); and
  'changed_clean': the same examples against their true class. No changed sets when no
  label changed.
  """
  sets = [EvalSet('trainset', 'pool', data.train_idx, data.y_train)]
  changed = changed_rows(data)
  if len(changed):
    rows = data.train_idx[changed]
    sets += [EvalSet('changed', 'pool', rows, data.y_train[changed]),
             EvalSet('changed_clean', 'pool', rows, data.y_train_clean[changed])]
  return sets


def trajectories(config: ml_collections.ConfigDict, data: Dataset, seeds: int
                 ) -> list[dict[str, Any]]:
  """Trains `seeds` runs for config.train.epochs, evaluating after every epoch.

  Returns per seed: per-epoch inference-mode 'train_accuracy_curve' (noisy labels),
  'memorized_curve' (changed examples predicted as their noisy label; empty without
  changed labels), 'val_accuracy_curve' / 'val_loss_curve' (clean), the training-mode
  'train_mode_accuracy_curve' (batch mean, as Keras reports it), and at the end
  'test_accuracy', 'train_accuracy', 'memorized', 'changed_true_class'.
  """
  sets = eval_sets(data)
  rows = []
  for seed in range(seeds):
    # One run per group, as `early_stopped`'s train.fit trains it: seed k's full run and
    # its early-stopped run take the same steps, bit for bit, until the latter stops.
    # The seeds share one compiled program (regjax/train.py `_program_key`).
    group = train.RunGroup([train.Run(config, seed, data)], eval_sets=sets)
    ((record, history, _),) = group.fit()
    curve = lambda key: [row[key] for row in history if key in row]
    memorized = curve('changed_accuracy')
    rows.append({
        'seed': seed,
        'train_accuracy_curve': curve('trainset_accuracy'),
        'memorized_curve': memorized,
        'val_accuracy_curve': curve('val_accuracy'),
        'val_loss_curve': curve('val_loss'),
        'train_mode_accuracy_curve': curve('train_accuracy'),
        'train_accuracy': history[-1]['trainset_accuracy'],
        'memorized': memorized[-1] if memorized else None,
        'changed_true_class': history[-1].get('changed_clean_accuracy'),
        'test_accuracy': record['test_accuracy'],
        'epochs_run': record['epochs_run'],
        'seconds_per_epoch': record['seconds_per_epoch'],
    })
  return rows


def early_stopped(config: ml_collections.ConfigDict, data: Dataset, seeds: int
                  ) -> list[dict[str, Any]]:
  """`train.fit` with early stopping: per seed the kept epoch and its accuracies."""
  changed = changed_rows(data)
  # The kept weights on the changed examples, in inference mode (any Trainer of this
  # config evaluates them alike; its penalty terms do not enter the evaluation).
  evaluate = jax.jit(trainer_lib.make_trainer(config, data.num_classes,
                                              data.num_train).evaluate)
  rows = []
  for seed in range(seeds):
    record, history, v = train.fit(config, data, seed)
    row = {'seed': seed, 'best_epoch': record['best_epoch'],
           'epochs_run': record['epochs_run'],
           'val_accuracy_curve': [r['val_accuracy'] for r in history],
           'train_accuracy': record['train_accuracy'],
           'test_accuracy': record['test_accuracy'], 'memorized': None,
           'changed_true_class': None}
    if len(changed):
      x = data.x_train[changed]
      row['memorized'] = float(evaluate(v['params'], v['batch_stats'], x,
                                        data.y_train[changed])['accuracy'])
      row['changed_true_class'] = float(evaluate(v['params'], v['batch_stats'], x,
                                                 data.y_train_clean[changed])['accuracy'])
    rows.append(row)
  return rows


def train_group(s: Settings, mnist_dir: str, noise: float, name: str,
                overrides: dict[str, Any]) -> list[dict[str, Any]]:
  """All seeds of one (noise, regularizer) setting; one record per seed."""
  config = make_config(s, mnist_dir, noise, overrides)
  data = load_dataset(config.data)
  es = bool(config.early_stopping.enabled)
  rows = (early_stopped if es else trajectories)(config, data, s.seeds)
  changed = len(changed_rows(data))
  for row in rows:
    row.update(noise=noise, regularizer=name, early_stopping=es, changed_labels=changed,
               epochs_to_fit=(None if es else epochs_to_fit(row['train_accuracy_curve'])),
               epochs_to_memorize=(None if es or not changed else epochs_to_fit(
                   row['memorized_curve'], MEMORIZE_THRESHOLD)))
  print(f'noise {noise:g} {name}: fit at {[r["epochs_to_fit"] for r in rows]}, test '
        f'{[round(r["test_accuracy"], 4) for r in rows]}', flush=True)
  return rows


def run(out: str, mnist_dir: str = '', smoke: bool = False, seeds: int = 3
        ) -> dict[str, Any]:
  """Runs the three parts, writes results.json, the figures and report.md into `out`."""
  t_start = time.perf_counter()
  s = make_settings(smoke, seeds)
  runs = []
  for noise in s.noise_levels:
    runs += train_group(s, mnist_dir, noise, 'none', {})
  for noise in s.reg_noise:
    for name, overrides in s.regularizers:
      runs += train_group(s, mnist_dir, noise, name, dict(overrides))
  for noise in s.noise_levels:
    runs += train_group(s, mnist_dir, noise, 'early_stopping',
                        {'early_stopping.enabled': True})
  results = {
      'settings': dataclasses.asdict(s),
      'fit_threshold': FIT_THRESHOLD,
      'memorize_threshold': MEMORIZE_THRESHOLD,
      'runs': runs,
      'groups': summarize(runs),
      'early_stopping': early_stopping_pairs(runs, s),
      'runtime_seconds': time.perf_counter() - t_start,
  }
  out_dir = Path(out)
  out_dir.mkdir(parents=True, exist_ok=True)
  report.atomic_write_json(str(out_dir / 'results.json'), results)
  plot_fit(results, str(out_dir / FIT_FIGURE))
  plot_regularizers(results, str(out_dir / REG_FIGURE))
  plot_early_stopping(results, str(out_dir / ES_FIGURE))
  report.atomic_write_text(str(out_dir / 'report.md'), markdown(results))
  return results


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
  vals = [v for v in values if v is not None]
  if not vals:
    return None, None
  return float(np.mean(vals)), (float(np.std(vals, ddof=1)) if len(vals) > 1 else None)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Per (noise, regularizer): means ± sd over seeds; epochs_to_fit over fitted seeds."""
  keys = list(dict.fromkeys((r['noise'], r['regularizer']) for r in runs))
  out = []
  for noise, name in keys:
    rs = [r for r in runs if (r['noise'], r['regularizer']) == (noise, name)]
    row = {'noise': noise, 'regularizer': name, 'n': len(rs),
           'fitted': sum(r['epochs_to_fit'] is not None for r in rs),
           'changed_labels': rs[0]['changed_labels']}
    row['memorized_90'] = sum(r.get('epochs_to_memorize') is not None for r in rs)
    for key in ('epochs_to_fit', 'epochs_to_memorize', 'train_accuracy', 'test_accuracy',
                'memorized', 'changed_true_class', 'best_epoch', 'epochs_run'):
      row[f'{key}_mean'], row[f'{key}_sd'] = _mean_sd([r.get(key) for r in rs])
    out.append(row)
  return out


def early_stopping_pairs(runs: list[dict[str, Any]], s: Settings) -> list[dict[str, Any]]:
  """Per noise level: early-stopped (restored) vs trained-to-the-end, paired by seed."""
  out = []
  for noise in s.noise_levels:
    end = {r['seed']: r for r in runs if r['noise'] == noise and r['regularizer'] == 'none'}
    es = {r['seed']: r for r in runs
          if r['noise'] == noise and r['regularizer'] == 'early_stopping'}
    seeds = sorted(set(end) & set(es))
    diffs = [es[k]['test_accuracy'] - end[k]['test_accuracy'] for k in seeds]
    row = {'noise': noise, 'n': len(seeds), 'test_diff_per_seed': diffs}
    row['test_diff_mean'], row['test_diff_sd'] = _mean_sd(diffs)
    for tag, group in (('es', es), ('end', end)):
      for key in ('test_accuracy', 'memorized', 'train_accuracy'):
        row[f'{tag}_{key}_mean'], row[f'{tag}_{key}_sd'] = _mean_sd(
            [group[k].get(key) for k in seeds])
    row['best_epoch_mean'], row['best_epoch_sd'] = _mean_sd(
        [es[k]['best_epoch'] + 1 for k in seeds])
    row['stop_epochs_mean'], _ = _mean_sd([es[k]['epochs_run'] for k in seeds])
    out.append(row)
  return out


def _curve_mean(runs: list[dict[str, Any]], key: str) -> np.ndarray:
  length = min(len(r[key]) for r in runs)
  return np.mean([r[key][:length] for r in runs], axis=0)


def plot_fit(results: dict[str, Any], path: str) -> None:
  """Training (noisy-label) and validation (clean) accuracy per epoch; time to fit."""
  s = results['settings']
  runs = [r for r in results['runs'] if r['regularizer'] == 'none']
  fig = mpl_figure.Figure(figsize=(12, 3.6), dpi=120, layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  ax1, ax2, ax3 = fig.subplots(1, 3)
  cmap = matplotlib.colormaps['plasma']
  levels = s['noise_levels']
  for i, noise in enumerate(levels):
    rs = [r for r in runs if r['noise'] == noise]
    color = cmap(0.85 * i / max(len(levels) - 1, 1))
    tr = _curve_mean(rs, 'train_accuracy_curve')
    va = _curve_mean(rs, 'val_accuracy_curve')
    ax1.plot(np.arange(1, len(tr) + 1), 100 * tr, color=color, label=f'noise {noise:g}')
    ax2.plot(np.arange(1, len(va) + 1), 100 * va, color=color, label=f'noise {noise:g}')
    fits = [r['epochs_to_fit'] for r in rs]
    ok = [f for f in fits if f is not None]
    ax3.scatter([noise] * len(ok), ok, color=color, s=18, zorder=3)
    miss = len(fits) - len(ok)
    if miss:
      ax3.scatter([noise] * miss, [s['epochs'] + 2] * miss, color=color, marker='x', s=24)
  ax1.axhline(100 * results['fit_threshold'], color='gray', ls=':', lw=0.8)
  ax1.set(xlabel='epoch', ylabel='train accuracy on noisy labels %',
          title='fit to the given labels')
  ax2.set(xlabel='epoch', ylabel='validation accuracy % (clean labels)',
          title='generalization')
  ax3.set(xlabel='label noise', ylabel=f"epochs to {100 * results['fit_threshold']:g}% "
          'train acc', title=f"time to fit (x: not within {s['epochs']} epochs)")
  for ax in (ax1, ax2, ax3):
    ax.grid(True, alpha=0.3)
  ax1.legend(fontsize=8, frameon=False)
  fig.suptitle(f"MLP {list(s['widths'])}, {s['train_size']} training examples, Adam 1e-3,"
               f" batch 32, no early stopping; inference-mode accuracy after each epoch; "
               f"curves: mean of {s['seeds']} seeds, dots: seeds", fontsize=10)
  fig.savefig(path, dpi=120)


def plot_regularizers(results: dict[str, Any], path: str) -> None:
  """Per regularized noise level: noisy-label train accuracy per epoch per regularizer."""
  s = results['settings']
  names = ['none'] + [name for name, _ in s['regularizers']]
  levels = s['reg_noise']
  fig = mpl_figure.Figure(figsize=(3.8 * len(levels), 3.5), dpi=120, layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  axes = fig.subplots(1, len(levels), squeeze=False)[0]
  groups = {(g['noise'], g['regularizer']): g for g in results['groups']}
  for ax, noise in zip(axes, levels):
    for i, name in enumerate(names):
      rs = [r for r in results['runs'] if r['noise'] == noise and r['regularizer'] == name]
      if not rs:
        continue
      key = 'memorized_curve' if rs[0]['memorized_curve'] else 'train_accuracy_curve'
      tr = _curve_mean(rs, key)
      g = groups[(noise, name)]
      mem = ('' if g['memorized_mean'] is None
             else f", memorized {100 * g['memorized_mean']:.0f}%")
      ax.plot(np.arange(1, len(tr) + 1), 100 * tr, color=f'C{i}',
              label=f"{name} (test {100 * g['test_accuracy_mean']:.1f}%{mem})")
    ax.set(xlabel='epoch', title=f'label noise {noise:g}', ylabel=(
        'changed labels memorized %' if noise > 0 else 'train accuracy %'))
    ax.set_ylim(0, 101)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc='lower right')
  fig.suptitle('Regularizers vs memorization (inference mode, mean of seeds): share of the '
               'changed labels predicted as their noisy label; legend: at the end', fontsize=10)
  fig.savefig(path, dpi=120)


def plot_early_stopping(results: dict[str, Any], path: str) -> None:
  """Test accuracy at the restored epoch vs at the end, per noise level (paired)."""
  rows = results['early_stopping']
  fig = mpl_figure.Figure(figsize=(13, 3.6), dpi=120, layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  ax1, ax2, ax3 = fig.subplots(1, 3)
  noise = [r['noise'] for r in rows]
  cmap = matplotlib.colormaps['plasma']
  levels = results['settings']['noise_levels']
  for i, level in enumerate(levels):
    full = [r for r in results['runs'] if r['noise'] == level and r['regularizer'] == 'none']
    if not full or not full[0]['memorized_curve']:
      continue
    color = cmap(0.85 * i / max(len(levels) - 1, 1))
    mem = 100 * _curve_mean(full, 'memorized_curve')
    ax3.plot(np.arange(1, len(mem) + 1), mem, color=color, label=f'noise {level:g}')
    kept = [r['best_epoch'] for r in results['runs']
            if r['noise'] == level and r['regularizer'] == 'early_stopping']
    for k in kept:  # 0-based kept epoch -> its point on the (1-based) curve.
      if 0 <= k < len(mem):
        ax3.plot(k + 1, mem[k], 'v', color=color, mec='black', mew=0.5, ms=6)
  ax3.set(xlabel='epoch', ylabel='changed labels memorized %',
          title='full runs; ▼ = epochs early stopping kept')
  ax3.grid(True, alpha=0.3)
  if ax3.lines:
    ax3.legend(fontsize=7, frameon=False)
  for tag, label, color in (('es', 'early stopping (restored)', 'tab:green'),
                            ('end', 'trained to the end', 'tab:red')):
    m = [100 * (r[f'{tag}_test_accuracy_mean'] or 0) for r in rows]
    sd = [100 * (r[f'{tag}_test_accuracy_sd'] or 0) for r in rows]
    ax1.errorbar(noise, m, yerr=sd, marker='o', capsize=3, color=color, label=label)
    mem = [100 * r[f'{tag}_memorized_mean'] if r[f'{tag}_memorized_mean'] is not None
           else np.nan for r in rows]
    ax2.plot(noise, mem, marker='o', color=color, label=label)
  ax1.set(xlabel='label noise', ylabel='test accuracy %', title='test accuracy')
  ax2.set(xlabel='label noise', ylabel='changed labels memorized %',
          title='memorization of the noise')
  for ax in (ax1, ax2):
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
  fig.suptitle('Early stopping on the clean validation loss vs training to the end '
               '(same seeds; mean ± sd)', fontsize=10)
  fig.savefig(path, dpi=120)


def _pm(mean: float | None, sd: float | None, scale: float = 100.0, fmt: str = '.2f'
        ) -> str:
  if mean is None:
    return 'n/a'
  sd_text = '' if sd is None else f" ± {format(sd * scale, fmt.lstrip('+'))}"
  return format(mean * scale, fmt) + sd_text


def markdown(results: dict[str, Any]) -> str:
  """The report: fit table, regularizer table, early-stopping table, figures."""
  s = results['settings']
  groups = results['groups']
  lines = [
      '# Memorization of noisy labels',
      '',
      f"MNIST subset of {s['train_size']} training examples (dataset {s['dataset']}), "
      f"MLP {list(s['widths'])}, Adam 1e-3, batch 32, {s['epochs']} epochs, "
      f"{s['seeds']} seeds. Runtime {results['runtime_seconds']:.0f} s.",
      '',
      'Epochs to fit: first epoch with inference-mode training accuracy (noisy labels) '
      f">= {100 * results['fit_threshold']:g}%; epochs to memorize: first epoch with >= "
      f"{100 * results['memorize_threshold']:g}% of the changed labels predicted as their "
      'noisy label; (seeds reaching it / seeds); mean ± sd over the seeds that reach it. '
      'Final values after the last epoch, mean ± sd over seeds.',
      '',
      '| noise | regularizer | changed labels | epochs to fit | epochs to memorize | '
      'final train acc % (noisy labels) | memorized % of changed | changed: true class % '
      '| test acc % |',
      '|---|---|---|---|---|---|---|---|---|',
  ]
  for g in groups:
    if g['regularizer'] == 'early_stopping':
      continue
    fit = _pm(g['epochs_to_fit_mean'], g['epochs_to_fit_sd'], 1.0, '.1f')
    mem = ('n/a' if not g['changed_labels'] else
           _pm(g['epochs_to_memorize_mean'], g['epochs_to_memorize_sd'], 1.0, '.1f')
           + f" ({g['memorized_90']}/{g['n']})")
    lines.append(
        f"| {g['noise']:g} | {g['regularizer']} | {g['changed_labels']} | {fit} "
        f"({g['fitted']}/{g['n']}) | {mem} | "
        f"{_pm(g['train_accuracy_mean'], g['train_accuracy_sd'])}"
        f" | {_pm(g['memorized_mean'], g['memorized_sd'])} | "
        f"{_pm(g['changed_true_class_mean'], g['changed_true_class_sd'])} | "
        f"{_pm(g['test_accuracy_mean'], g['test_accuracy_sd'])} |")
  lines += [
      '',
      f"Early stopping (val_loss, patience {s['patience']}, restore best) vs the same "
      'seeds trained to the end:',
      '',
      '| noise | kept epoch | stopped after | test acc % (ES) | test acc % (end) | '
      'ES - end pp | memorized % (ES) | memorized % (end) |',
      '|---|---|---|---|---|---|---|---|',
  ]
  for r in results['early_stopping']:
    lines.append(
        f"| {r['noise']:g} | {_pm(r['best_epoch_mean'], r['best_epoch_sd'], 1, '.1f')} | "
        f"{_pm(r['stop_epochs_mean'], None, 1, '.1f')} | "
        f"{_pm(r['es_test_accuracy_mean'], r['es_test_accuracy_sd'])} | "
        f"{_pm(r['end_test_accuracy_mean'], r['end_test_accuracy_sd'])} | "
        f"{_pm(r['test_diff_mean'], r['test_diff_sd'], 100, '+.2f')} | "
        f"{_pm(r['es_memorized_mean'], r['es_memorized_sd'])} | "
        f"{_pm(r['end_memorized_mean'], r['end_memorized_sd'])} |")
  lines += ['', f'![fit]({FIT_FIGURE})', '', f'![regularizers]({REG_FIGURE})', '',
            f'![early stopping]({ES_FIGURE})', '']
  return '\n'.join(lines)



if __name__ == '__main__':
  common.script_main(run, default_seeds=3, seeds_help='Seeds per setting.', min_seeds=1)
