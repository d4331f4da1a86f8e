r"""Experiment 8: memorizing random labels (Zhang et al. 2017), and what stops it.

  python -m experiments.memorization --out=/tmp/memorization [--mnist_dir=DIR] \
      [--smoke] [--seeds=N]

A wide MLP trains for a fixed number of epochs, without early stopping, on an MNIST
subset whose training labels are partly or fully random (`data.label_noise`: that share
of the training examples gets a class drawn uniformly from all 10, which keeps the true
class one time in ten, so 1.0 means labels independent of the images and 0.5 changes
about 45% of them). Validation and test labels stay clean. Seed k draws its own
validation split, training subset and noisy labels (data.split_seed = k).

  1. Fit: after every epoch the network is evaluated in inference mode (dropout off) on
     the training set with its noisy labels; "time to fit" is the first epoch at which
     that accuracy reaches 99%. "Memorized" is the share of the examples whose label was
     changed that the network predicts as their (wrong) noisy label.
  2. Regularizers (L2 penalty, dropout, decoupled weight decay) at noise 0.5, each on a
     grid of three strengths; per seed the strength with the best (clean) validation
     accuracy after the last epoch is chosen (the test set never chooses). Do they slow
     the fit, stop the memorization, help the test accuracy?
  3. Early stopping on the clean validation loss (patience 10, best weights restored),
     replayed with regjax's EarlyStopping on the validation curve of each run trained
     to the end (early stopping only truncates the path): the epoch it keeps, the test
     accuracy of that epoch's weights (kept during training and tested once), and how
     much of the noise it had memorized. One real `train.fit` checks the replay.

The headline at noise 0.5: the three tuned regularizers and early stopping against no
regularization trained to the end, paired by seed (sign-flip p, Holm over the four);
early stopping against the end at every noise level (Holm over the levels).

Every run is regjax's one training program (regjax/program.py). The fixed-epoch runs
add the per-epoch scores as the program's extra evaluation sets (`eval_sets`: the
training set, and the changed examples against their noisy labels); the validation
curve is the program's own.

Outputs in --out: results.json, memorization_fit.png, memorization_regularizers.png,
memorization_early_stopping.png, report.md.
"""

import dataclasses
import os
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
from regjax import stats
from regjax import train
from regjax import trainer as trainer_lib
from regjax.data import Dataset
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
  """Sizes. regularizers: (name, config field, grid of strengths); reg_noise: the noise
  levels where they are tuned."""
  dataset: str
  train_size: int
  validation_fraction: float
  widths: tuple[int, ...]
  noise_levels: tuple[float, ...]
  epochs: int
  seeds: int
  regularizers: tuple[tuple[str, str, tuple[float, ...]], ...]
  reg_noise: tuple[float, ...]
  patience: int


def make_settings(smoke: bool, seeds: int) -> Settings:
  """The full MNIST run, or a seconds-long one on digits for tests."""
  if seeds < 1:
    raise ConfigError('seeds', seeds, 'must be >= 1')
  if smoke:
    return Settings(dataset='digits', train_size=200, validation_fraction=0.2,
                    widths=(32,), noise_levels=(1.0,), epochs=4, seeds=seeds,
                    regularizers=(('dropout', 'model.dropout_rate', (0.2, 0.5)),),
                    reg_noise=(1.0,), patience=1)
  # 60 epochs (80 before): every unregularized run fits by epoch ~35, and the budget
  # keeps 8 seeds of 14 settings near 15 CPU minutes.
  return Settings(
      dataset='mnist', train_size=2000, validation_fraction=0.05, widths=(512,),
      noise_levels=(0.0, 0.2, 0.5, 0.8, 1.0), epochs=60, seeds=seeds,
      regularizers=(('l2', 'penalty.l2', (1e-3, 1e-2, 1e-1)),
                    ('dropout', 'model.dropout_rate', (0.2, 0.5, 0.8)),
                    ('weight_decay', 'optimizer.weight_decay', (1.0, 3.0, 10.0))),
      reg_noise=(0.5,), patience=10)


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
  examples whose label was changed, against the noisy label (memorized). No changed set
  when no label changed.
  """
  sets = [EvalSet('trainset', 'pool', data.train_idx, data.y_train)]
  changed = changed_rows(data)
  if len(changed):
    sets.append(EvalSet('changed', 'pool', data.train_idx[changed], data.y_train[changed]))
  return sets


def trajectory(config: ml_collections.ConfigDict, data: Dataset, seed: int,
               patience: int | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
  """Trains one run for config.train.epochs, evaluating after every epoch.

  Returns (row, es_row). row: per-epoch inference-mode 'train_accuracy_curve' (noisy
  labels), 'memorized_curve' (changed examples predicted as their noisy label; empty
  without changed labels), 'val_accuracy_curve' / 'val_loss_curve' (clean), the
  training-mode 'train_mode_accuracy_curve' (batch mean, as Keras reports it), and at
  the end 'test_accuracy', 'val_accuracy', 'train_accuracy', 'memorized',
  'changed_true_class'. es_row (when `patience` is given): early stopping on val_loss
  with that patience and restore, replayed on the run's validation curve; its kept
  epoch's weights (kept during training) are tested once.
  """
  snapshots: dict[int, Any] = {}
  keep = None if patience is None else (
      lambda _, epoch, state: snapshots.__setitem__(epoch, jax.device_get(state.params)))
  group = train.RunGroup([train.Run(config, seed, data)], eval_sets=eval_sets(data))
  ((record, history, variables),) = group.fit(on_state=keep)
  curve = lambda key: [row[key] for row in history if key in row]
  memorized = curve('changed_accuracy')
  changed = changed_rows(data)
  evaluate = jax.jit(group.program.trainer.evaluate)

  def true_class(params) -> float | None:
    if not len(changed):
      return None
    return float(evaluate(params, variables['batch_stats'], data.x_train[changed],
                          data.y_train_clean[changed])['accuracy'])

  row = {
      'seed': seed,
      'train_accuracy_curve': curve('trainset_accuracy'),
      'memorized_curve': memorized,
      'val_accuracy_curve': curve('val_accuracy'),
      'val_loss_curve': curve('val_loss'),
      'train_mode_accuracy_curve': curve('train_accuracy'),
      'train_accuracy': history[-1]['trainset_accuracy'],
      'memorized': memorized[-1] if memorized else None,
      'changed_true_class': true_class(variables['params']),
      'test_accuracy': record['test_accuracy'],
      'val_accuracy': record['val_accuracy'],
      'diverged': record['diverged'],
      'epochs_run': record['epochs_run'],
      'seconds_per_epoch': record['seconds_per_epoch'],
  }
  if patience is None:
    return row, None
  es = common.simulate_early_stopping(
      [{'epoch': e, 'val_loss': v} for e, v in enumerate(row['val_loss_curve'])], patience)
  k = es['kept_epoch']
  params = snapshots[k]
  es_row = {
      'seed': seed, 'best_epoch': k, 'epochs_run': es['epochs_run'],
      'val_accuracy_curve': row['val_accuracy_curve'][:es['epochs_run']],
      'train_accuracy': row['train_accuracy_curve'][k],
      'memorized': memorized[k] if memorized else None,
      'changed_true_class': true_class(params),
      'test_accuracy': float(evaluate(params, variables['batch_stats'], data.x_test,
                                      data.y_test)['accuracy']),
      'val_accuracy': row['val_accuracy_curve'][k], 'diverged': False}
  return row, es_row


def train_group(s: Settings, mnist_dir: str, noise: float, name: str,
                overrides: dict[str, Any]) -> tuple[list[dict[str, Any]],
                                                    list[dict[str, Any]]]:
  """All seeds of one (noise, regularizer) setting: (runs, early-stopped replays).

  Early stopping is replayed on the unregularized runs only ('none').
  """
  config = make_config(s, mnist_dir, noise, overrides)
  rows, es_rows = [], []
  for seed, data in enumerate(common.seed_splits(config, s.seeds)):
    row, es_row = trajectory(config, data, seed, s.patience if name == 'none' else None)
    changed = len(changed_rows(data))
    row.update(noise=noise, regularizer=name, early_stopping=False, changed_labels=changed,
               epochs_to_fit=epochs_to_fit(row['train_accuracy_curve']),
               epochs_to_memorize=(None if not changed else epochs_to_fit(
                   row['memorized_curve'], MEMORIZE_THRESHOLD)))
    rows.append(row)
    if es_row is not None:
      es_row.update(noise=noise, regularizer='early_stopping', early_stopping=True,
                    changed_labels=changed, epochs_to_fit=None, epochs_to_memorize=None)
      es_rows.append(es_row)
  print(f'noise {noise:g} {name}: fit at {[r["epochs_to_fit"] for r in rows]}, test '
        f'{[round(r["test_accuracy"], 4) for r in rows]}', flush=True)
  return rows, es_rows


def tuned_runs(runs: list[dict[str, Any]], noise: float, name: str,
               values: tuple[float, ...]) -> list[dict[str, Any]]:
  """Per seed, the grid run of regularizer `name` at `noise` with the best validation
  accuracy after the last epoch, relabelled '<name> (tuned)' with 'chosen' = strength."""
  by_value = {v: sorted((r for r in runs if r['noise'] == noise
                         and r['regularizer'] == f'{name}={v:g}'), key=lambda r: r['seed'])
              for v in values}
  chosen = common.choose_per_seed(by_value, f'{name} (tuned)')
  return [dict(r, regularizer=r['variant']) for r in chosen]


def replay_check(s: Settings, mnist_dir: str, noise: float, es_row: dict[str, Any]
                 ) -> dict[str, Any]:
  """A real train.fit with early stopping (seed 0) against the replay of its run."""
  config = make_config(s, mnist_dir, noise, {'early_stopping.enabled': True})
  data = common.seed_splits(config, 1)[0]
  record, _, _ = train.fit(config, data, 0)
  check = {'noise': noise,
           'runner': {'best_epoch': record['best_epoch'], 'epochs_run': record['epochs_run'],
                      'test_accuracy': record['test_accuracy']},
           'replay': {k: es_row[k] for k in ('best_epoch', 'epochs_run', 'test_accuracy')}}
  check['agrees'] = (check['runner']['best_epoch'] == check['replay']['best_epoch']
                     and check['runner']['epochs_run'] == check['replay']['epochs_run']
                     and abs(check['runner']['test_accuracy']
                             - check['replay']['test_accuracy']) < 1.5 / len(data.y_test))
  print(f'replay check: {check}', flush=True)
  return check


def run(out: str, mnist_dir: str = '', smoke: bool = False, seeds: int = 8
        ) -> dict[str, Any]:
  """Runs the three parts, writes results.json, the figures and report.md into `out`."""
  t_start, c_start = time.perf_counter(), time.process_time()
  s = make_settings(smoke, seeds)
  runs = []
  for noise in s.noise_levels:
    rows, es_rows = train_group(s, mnist_dir, noise, 'none', {})
    runs += rows + es_rows
  for noise in s.reg_noise:
    for name, field, values in s.regularizers:
      for value in values:
        rows, _ = train_group(s, mnist_dir, noise, f'{name}={value:g}', {field: value})
        runs += rows
      runs += tuned_runs(runs, noise, name, values)
  check_noise = s.reg_noise[0]
  check = replay_check(s, mnist_dir, check_noise, next(
      r for r in runs if r['noise'] == check_noise and r['regularizer'] == 'early_stopping'
      and r['seed'] == 0))
  results = {
      'settings': dataclasses.asdict(s),
      'fit_threshold': FIT_THRESHOLD,
      'memorize_threshold': MEMORIZE_THRESHOLD,
      'runs': runs,
      'groups': summarize(runs),
      'early_stopping': early_stopping_pairs(runs, s),
      'headline': headline(runs, s),
      'replay_check': check,
      'runtime_seconds': time.perf_counter() - t_start,
      'cpu_seconds': time.process_time() - c_start,
      'load_average_5min': os.getloadavg()[1],
      'machine': common.machine(),
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
                'val_accuracy', 'memorized', 'changed_true_class', 'best_epoch',
                'epochs_run'):
      row[f'{key}_mean'], row[f'{key}_sd'] = _mean_sd([r.get(key) for r in rs])
    if 'chosen' in rs[0]:
      row['chosen'] = common.chosen_text(rs)
    out.append(row)
  return out


def early_stopping_pairs(runs: list[dict[str, Any]], s: Settings) -> list[dict[str, Any]]:
  """Per noise level: early-stopped (restored) vs trained-to-the-end, paired by seed;
  sign-flip p per level, Holm over the levels."""
  out = []
  for noise in s.noise_levels:
    end = {r['seed']: r for r in runs if r['noise'] == noise and r['regularizer'] == 'none'}
    es = {r['seed']: r for r in runs
          if r['noise'] == noise and r['regularizer'] == 'early_stopping'}
    seeds = sorted(set(end) & set(es))
    diffs = [es[k]['test_accuracy'] - end[k]['test_accuracy'] for k in seeds]
    row = {'noise': noise, 'n': len(seeds), 'test_diff_per_seed': diffs}
    row['test_diff_mean'], row['test_diff_sd'] = _mean_sd(diffs)
    test = common.paired_test(diffs)
    row.update(test_diff_low=test['low'], test_diff_high=test['high'],
               p_value=test['p_value'])
    for tag, group in (('es', es), ('end', end)):
      for key in ('test_accuracy', 'memorized', 'train_accuracy'):
        row[f'{tag}_{key}_mean'], row[f'{tag}_{key}_sd'] = _mean_sd(
            [group[k].get(key) for k in seeds])
    row['best_epoch_mean'], row['best_epoch_sd'] = _mean_sd(
        [es[k]['best_epoch'] + 1 for k in seeds])
    row['stop_epochs_mean'], _ = _mean_sd([es[k]['epochs_run'] for k in seeds])
    out.append(row)
  finite = [r for r in out if r['p_value'] == r['p_value']]
  for r, p in zip(finite, stats.holm([r['p_value'] for r in finite])):
    r['p_adjusted'] = float(p)
  return out


def headline(runs: list[dict[str, Any]], s: Settings) -> dict[str, list[dict[str, Any]]]:
  """At each regularized noise level: the tuned regularizers and early stopping against
  no regularization trained to the end (report.summarize; Holm over the rows)."""
  out = {}
  for noise in s.reg_noise:
    names = ['none'] + [f'{name} (tuned)' for name, _, _ in s.regularizers] + [
        'early_stopping']
    records = [{'variant': r['regularizer'], 'seed': r['seed'],
                'test_accuracy': r['test_accuracy'],
                'train_accuracy': r['train_accuracy'], 'diverged': r.get('diverged', False)}
               for name in names for r in runs
               if r['noise'] == noise and r['regularizer'] == name]
    out[f'{noise:g}'] = report.summarize(records, baseline='none')
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
  names = ['none'] + [f'{name} (tuned)' for name, _, _ in s['regularizers']]
  levels = s['reg_noise']
  fig = mpl_figure.Figure(figsize=(max(7.0, 3.8 * len(levels)), 4.0), dpi=120,
                          layout='constrained')
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
      chosen = f" at {g['chosen']}" if g.get('chosen') else ''
      ax.plot(np.arange(1, len(tr) + 1), 100 * tr, color=f'C{i}',
              label=f"{name}{chosen} (test {100 * g['test_accuracy_mean']:.1f}%{mem})")
    ax.set(xlabel='epoch', title=f'label noise {noise:g}', ylabel=(
        'changed labels memorized %' if noise > 0 else 'train accuracy %'))
    ax.set_ylim(0, 101)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc='lower right')
  fig.suptitle('Regularizers at the strength chosen per seed on validation (legend: median '
               '[min, max]) vs memorization (inference mode, mean of seeds): share of the '
               'changed labels predicted as their noisy label; legend: at the end', fontsize=9)
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
  """The report: fit table, headline table, early-stopping table, figures."""
  s = results['settings']
  groups = results['groups']
  lines = [
      '# Experiment 8: memorization of noisy labels',
      '',
      f"MNIST subset of {s['train_size']} training examples (dataset {s['dataset']}; seed "
      f"k: split seed k), MLP {list(s['widths'])}, Adam 1e-3, batch 32, {s['epochs']} "
      f"epochs, {s['seeds']} seeds. Runtime {results['runtime_seconds'] / 60:.1f} min wall "
      f"clock ({results['cpu_seconds'] / 60:.1f} min of CPU time) on {results['machine']}; "
      f"5-minute load average at the end {results['load_average_5min']:.1f}.",
      '',
      'Epochs to fit: first epoch with inference-mode training accuracy (noisy labels) '
      f">= {100 * results['fit_threshold']:g}%; epochs to memorize: first epoch with >= "
      f"{100 * results['memorize_threshold']:g}% of the changed labels predicted as their "
      'noisy label; (seeds reaching it / seeds); mean ± sd over the seeds that reach it. '
      'Final values after the last epoch, mean ± sd over seeds. "(tuned)": per seed the '
      'grid strength with the best validation accuracy after the last epoch (chosen: '
      'median [min, max]).',
      '',
      '| noise | regularizer | changed labels | epochs to fit | epochs to memorize | '
      'final train acc % (noisy labels) | memorized % of changed | changed: true class % '
      '| val acc % | test acc % |',
      '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for g in groups:
    if g['regularizer'] == 'early_stopping':
      continue
    fit = _pm(g['epochs_to_fit_mean'], g['epochs_to_fit_sd'], 1.0, '.1f')
    mem = ('n/a' if not g['changed_labels'] else
           _pm(g['epochs_to_memorize_mean'], g['epochs_to_memorize_sd'], 1.0, '.1f')
           + f" ({g['memorized_90']}/{g['n']})")
    name = g['regularizer'] + (f" at {g['chosen']}" if g.get('chosen') else '')
    lines.append(
        f"| {g['noise']:g} | {name} | {g['changed_labels']} | {fit} "
        f"({g['fitted']}/{g['n']}) | {mem} | "
        f"{_pm(g['train_accuracy_mean'], g['train_accuracy_sd'])}"
        f" | {_pm(g['memorized_mean'], g['memorized_sd'])} | "
        f"{_pm(g['changed_true_class_mean'], g['changed_true_class_sd'])} | "
        f"{_pm(g['val_accuracy_mean'], g['val_accuracy_sd'])} | "
        f"{_pm(g['test_accuracy_mean'], g['test_accuracy_sd'])} |")
  for noise, rows in results['headline'].items():
    by_name = {g['regularizer']: g for g in groups if f"{g['noise']:g}" == noise}
    lines += [
        '',
        f'Headline at noise {noise}: against no regularization trained to the end, paired '
        'by seed; Δ with its 95% t-interval; p: sign-flip p / Holm p over the rows '
        '(* = Holm p < 0.05).',
        '',
        '| variant | chosen | test acc % | Δ vs none pp (95% CI) | p / Holm p | '
        'memorized % of changed |',
        '|---|---|---|---|---|---|']
    for row in rows:
      g = by_name[row['variant']]
      lines.append(f"| {row['variant']} | {g.get('chosen', '-')} | "
                   f"{_pm(row['test_acc_mean'], row['test_acc_std'])} | "
                   f"{common.diff_text(row)} | {common.p_text(row)} | "
                   f"{_pm(g['memorized_mean'], g['memorized_sd'])} |")
  check = results['replay_check']
  lines += [
      '',
      f"Early stopping (val_loss, patience {s['patience']}, restore best) replayed on the "
      'runs trained to the end (same seeds), paired; p: sign-flip p / Holm p over the noise '
      f"levels. Replay check (noise {check['noise']:g}, seed 0): train.fit kept epoch "
      f"{check['runner']['best_epoch']} after {check['runner']['epochs_run']} epochs, test "
      f"{100 * check['runner']['test_accuracy']:.2f}%; the replay "
      f"{check['replay']['best_epoch']}, {check['replay']['epochs_run']}, "
      f"{100 * check['replay']['test_accuracy']:.2f}% "
      f"({'agree' if check['agrees'] else 'DISAGREE'}).",
      '',
      '| noise | kept epoch | stopped after | test acc % (ES) | test acc % (end) | '
      'ES - end pp (95% CI) | p / Holm p | memorized % (ES) | memorized % (end) |',
      '|---|---|---|---|---|---|---|---|---|',
  ]
  for r in results['early_stopping']:
    ci = ('' if r['test_diff_low'] is None or r['test_diff_low'] != r['test_diff_low'] else
          f" [{100 * r['test_diff_low']:+.2f}, {100 * r['test_diff_high']:+.2f}]")
    p = ('' if r['p_value'] is None or r['p_value'] != r['p_value'] else
         f"{r['p_value']:.2g} / {r['p_adjusted']:.2g}"
         + (' *' if r['p_adjusted'] < 0.05 else ''))
    lines.append(
        f"| {r['noise']:g} | {_pm(r['best_epoch_mean'], r['best_epoch_sd'], 1, '.1f')} | "
        f"{_pm(r['stop_epochs_mean'], None, 1, '.1f')} | "
        f"{_pm(r['es_test_accuracy_mean'], r['es_test_accuracy_sd'])} | "
        f"{_pm(r['end_test_accuracy_mean'], r['end_test_accuracy_sd'])} | "
        f"{_pm(r['test_diff_mean'], None, 100, '+.2f')}{ci} | {p} | "
        f"{_pm(r['es_memorized_mean'], r['es_memorized_sd'])} | "
        f"{_pm(r['end_memorized_mean'], r['end_memorized_sd'])} |")
  lines += ['', f'![fit]({FIT_FIGURE})', '', f'![regularizers]({REG_FIGURE})', '',
            f'![early stopping]({ES_FIGURE})', '']
  return '\n'.join(lines)


if __name__ == '__main__':
  common.script_main(run, default_seeds=8, seeds_help='Seeds per setting.', min_seeds=1)
