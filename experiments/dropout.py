r"""Experiment 4: dropout rate sweep, inverted vs classic scaling, Monte Carlo dropout.

  python -m experiments.dropout --out=/tmp/exp4 [--mnist_dir=DIR] [--seeds=8] [--smoke]

The regime where experiment 1 found that dropout matters: MNIST with only 5,000
training images (seed k: its own split, data.split_seed = k), the notebook's MLP 128, Adam 1e-3, batch 32, 50 epochs (a
two-layer MLP 256-256 on the same data did not resolve any rate's effect from noise in
an earlier 3-seed run, see experiments/README.md). Early stopping (patience 10, restore best) on val_loss and,
separately, on val_accuracy is read off each full trajectory, as is the last epoch.

1. Rate sweep: dropout after each hidden layer at p = 0, 0.1, 0.2, 0.3, 0.5, 0.7;
   test accuracy of the early-stopped and of the last-epoch weights, paired by seed
   against p = 0 (Holm over the rates of each rule). The headline: dropout at the rate
   chosen per seed on validation accuracy (of the weights each rule keeps; the test set
   never chooses) against p = 0, under each rule (Holm over the three rules).
2. Scaling: p = 0.5 trained with inverted dropout (scale 1/(1-p) in training) and with
   classic dropout (scale (1-p) at inference), same seeds. Their accuracies should agree;
   and for each, the activations a layer passes on at inference should equal their
   expectation over dropout masks in training: measured per hidden unit by averaging
   the training-mode output of each dropout layer over K masks.
3. Monte Carlo dropout (Gal & Ghahramani 2016): average the softmax of T stochastic
   forward passes (dropout on), T = 1..50, against the deterministic (scaled) network:
   test accuracy, negative log-likelihood and expected calibration error (15 bins).

Writes results.json, report.md, dropout_rates.png, dropout_scaling.png and dropout_mc.png.
"""

import dataclasses
import functools
from typing import Any, Callable

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import common
from regjax import models
from regjax import report


@dataclasses.dataclass(frozen=True)
class Setting:
  """Sizes of the experiment (full run or smoke)."""
  widths: tuple[int, ...]
  train_size: int
  epochs: int
  patience: int
  rates: tuple[float, ...]
  mc_passes: int
  activation_masks: int


FULL = Setting(widths=(128,), train_size=5000, epochs=50, patience=10,
               rates=(0.0, 0.1, 0.2, 0.3, 0.5, 0.7), mc_passes=50, activation_masks=200)
SMOKE = Setting(widths=(64, 64), train_size=0, epochs=4, patience=2, rates=(0.0, 0.2, 0.5),
                mc_passes=5, activation_masks=20)
SCALING_RATE = 0.5
ECE_BINS = 15


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray,
                               bins: int = ECE_BINS) -> float:
  """ECE of predicted probabilities (N, C) against int labels (N,), as a fraction.

  Confidence = the top probability, cut into `bins` equal-width bins on [0, 1]; ECE is
  the example-weighted mean over bins of |accuracy - mean confidence| (Guo et al. 2017).
  Hand-written: scikit-learn and optax have reliability curves but no ECE.
  """
  conf = probs.max(1)
  correct = probs.argmax(1) == labels
  index = np.minimum((conf * bins).astype(int), bins - 1)
  total = 0.0
  for b in range(bins):
    sel = index == b
    if sel.any():
      total += sel.sum() * abs(correct[sel].mean() - conf[sel].mean())
  return float(total / len(labels))


def prob_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """{'accuracy', 'nll' (mean -log p(label), nats), 'ece'} of probabilities (N, C)."""
  p = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
  return {'accuracy': float(np.mean(probs.argmax(1) == labels)),
          'nll': float(-np.mean(np.log(p))),
          'ece': expected_calibration_error(probs, labels)}


def mc_dropout_curve(model, params, x: np.ndarray, y: np.ndarray, passes: int,
                     key: jax.Array) -> dict[str, Any]:
  """Metrics of the deterministic net and of MC averages over T = 1..passes passes.

  Returns {'deterministic': prob_metrics, 'mc': [prob_metrics for T = 1..passes]}.
  """
  variables = {'params': params}
  deterministic = jax.jit(lambda v, x: jax.nn.softmax(model.apply(v, x, train=False)))
  stochastic = jax.jit(lambda v, x, k: jax.nn.softmax(
      model.apply(v, x, train=True, rngs={'dropout': k})))
  out = {'deterministic': prob_metrics(np.asarray(deterministic(variables, x)), y), 'mc': []}
  total = np.zeros((len(x), model.num_classes), np.float64)
  for t in range(passes):
    total += np.asarray(stochastic(variables, x, jax.random.fold_in(key, t)))
    out['mc'].append(prob_metrics(total / (t + 1), y))
  return out


def dropout_activations(model, params, x: np.ndarray, masks: int, key: jax.Array
                        ) -> dict[str, dict[str, np.ndarray]]:
  """Per hidden unit, the inference output of each dropout layer vs its training mean.

  Returns {layer: {'inference': (units,), 'training_mean': (units,)}}, each the mean
  over the examples of x of that dropout layer's output; 'training_mean' also averages
  over `masks` independent dropout masks.
  """
  is_dropout = lambda mdl, _: isinstance(mdl, models.Dropout) and mdl.rate > 0

  @functools.partial(jax.jit, static_argnames='train')
  def capture(x, key, train):
    _, state = model.apply({'params': params}, x, train=train, rngs={'dropout': key},
                           capture_intermediates=is_dropout, mutable=['intermediates'])
    flat = jax.tree_util.tree_flatten_with_path(state['intermediates'])[0]
    return {jax.tree_util.keystr(path): value.mean(0) for path, value in flat}

  inference = capture(x, key, False)
  sums = jax.tree.map(jnp.zeros_like, inference)
  for k in range(masks):
    sums = jax.tree.map(jnp.add, sums, capture(x, jax.random.fold_in(key, k), True))
  return {layer.split("'")[1]: {'inference': np.asarray(inference[layer]),
                                'training_mean': np.asarray(sums[layer]) / masks}
          for layer in inference}


def layer_title(layer: str) -> str:
  """'_Hidden_0' (a Linen scope name) -> 'hidden layer 1'."""
  return f"hidden layer {int(layer.rsplit('_', 1)[1]) + 1}"


def run(out_dir: str, mnist_dir: str, smoke: bool, seeds: int,
        log: Callable[[str], None] = common.log, widths: tuple[int, ...] = (),
        epochs: int = 0) -> dict[str, Any]:
  """Runs the three parts and writes results.json, report.md and the figures.

  `widths` and `epochs` (when given) replace the setting's hidden widths and budget.
  """
  s = SMOKE if smoke else FULL
  if widths:
    s = dataclasses.replace(s, widths=tuple(widths))
  if epochs:
    s = dataclasses.replace(s, epochs=epochs)
  out = common.Outputs(out_dir, 'Experiment 4: dropout')
  base = common.base_config(smoke, mnist_dir)
  cfg = common.override(base, data__train_size=s.train_size, model__widths=s.widths,
                        train__epochs=s.epochs)
  datas = common.seed_splits(cfg, seeds)
  data = datas[0]
  x_test, y_test = np.asarray(data.x_test), np.asarray(data.y_test)

  variants = [(f'p={r:g}', r, 'inverted') for r in s.rates]
  variants.append((f'p={SCALING_RATE:g} classic', SCALING_RATE, 'classic'))
  trajectories: dict[str, list] = {}
  kept_params: dict[str, list] = {}
  records = {'early_stop': [], 'early_stop_acc': [], 'last': []}
  for name, rate, mode in variants:
    vcfg = common.override(cfg, model__dropout_rate=rate, model__dropout_mode=mode)
    trajectories[name], kept_params[name] = [], []
    for seed in range(seeds):
      traj = common.Trajectory(vcfg, datas[seed])
      snapshots = {}
      keep = rate == SCALING_RATE
      rows, _ = traj.run(seed, on_epoch=(
          lambda e, st: snapshots.__setitem__(e, jax.device_get(st.params))) if keep else None)
      es = common.simulate_early_stopping(rows, s.patience)
      trajectories[name].append(rows)
      if keep:
        kept_params[name].append(snapshots[es['kept_epoch']])
      records['early_stop'].append(common.record_at(rows, es['kept_epoch'], name, seed,
                                                    stop_epoch=es['stop_epoch']))
      es_acc = common.simulate_early_stopping(rows, s.patience, monitor='val_accuracy')
      records['early_stop_acc'].append(common.record_at(
          rows, es_acc['kept_epoch'], name, seed, stop_epoch=es_acc['stop_epoch']))
      records['last'].append(common.record_at(rows, len(rows) - 1, name, seed))
      log(f"{name} seed {seed}: test {100 * rows[es['kept_epoch']]['test_accuracy']:.2f}% "
          f"(early stop, epoch {es['kept_epoch']}), last {100 * rows[-1]['test_accuracy']:.2f}%")
    if name == f'p={SCALING_RATE:g}':
      scaling_model = traj.trainer.model
    if mode == 'classic':
      classic_model = traj.trainer.model
  summaries = {rule: report.summarize(rs, baseline='p=0') for rule, rs in records.items()}
  rate_names = [v[0] for v in variants if v[2] == 'inverted']
  # The headline: the rate chosen per seed on validation accuracy (p > 0 only: does
  # dropout at a tuned rate beat none?), per rule; one Holm family over the rules.
  tuned_rates = [n for n in rate_names if n != 'p=0']
  tuned_records, tuned_summaries = {}, {}
  for rule, rs in records.items():
    by_rate = {float(n[2:]): [r for r in rs if r['variant'] == n] for n in tuned_rates}
    tuned_records[rule] = ([r for r in rs if r['variant'] == 'p=0']
                           + common.choose_per_seed(by_rate, 'dropout (tuned)'))
    tuned_summaries[rule] = report.summarize(tuned_records[rule], baseline='p=0')
  common.holm_over([row for rows in tuned_summaries.values() for row in rows])

  # Figure 1: the rate sweep.
  fig, axes = common.new_figure(1, 3, width=4.2, height=3.4)
  rates = np.array(s.rates)
  for rule, style, label in (
      ('early_stop', 'o-', f'early stopping on val_loss (patience {s.patience})'),
      ('early_stop_acc', '^-.', f'early stopping on val_accuracy (patience {s.patience})'),
      ('last', 's--', f'last epoch ({s.epochs})')):
    acc = np.array([[r['test_accuracy'] * 100 for r in records[rule] if r['variant'] == n]
                    for n in rate_names])
    gap = np.array([[(r['train_accuracy'] - r['test_accuracy']) * 100
                     for r in records[rule] if r['variant'] == n] for n in rate_names])
    for ax, vals in ((axes[0, 0], acc), (axes[0, 1], gap)):
      mu = vals.mean(1)
      ax.errorbar(rates, mu, yerr=[mu - vals.min(1), vals.max(1) - mu], fmt=style, ms=4,
                  capsize=2, label=label)
  axes[0, 0].set_ylabel('test accuracy (%)')
  axes[0, 1].set_ylabel('train - test accuracy (pp)')
  for ax in axes[0, :2]:
    ax.set_xlabel('dropout rate p (each hidden layer)')
  axes[0, 0].legend(fontsize=7, frameon=False)
  cols = common.colors(len(rate_names))
  for name, color in zip(rate_names, cols):
    mean, low, high = common.curve_band([[r['val_loss'] for r in rows]
                                         for rows in trajectories[name]])
    ep = np.arange(1, len(mean) + 1)
    axes[0, 2].plot(ep, mean, color=color, lw=1.4, label=name)
    axes[0, 2].fill_between(ep, low, high, color=color, alpha=0.15, lw=0)
  axes[0, 2].set_xlabel('epoch')
  axes[0, 2].set_ylabel('validation loss (nats)')
  axes[0, 2].set_ylim(top=min(axes[0, 2].get_ylim()[1], 0.8))
  axes[0, 2].legend(fontsize=7, frameon=False, ncol=2)
  common.integer_x(axes[0, 2])
  fig.suptitle(f'Dropout rate sweep: {data.name}, {len(data.x_train):,} training images, '
               f'MLP {"-".join(map(str, s.widths))}; mean over {seeds} seeds, bars/bands = '
               'min-max', fontsize=9)
  fig_rates = out.figure(fig, 'dropout_rates.png', 'Test accuracy, generalization gap '
                         'and validation loss across dropout rates.')

  # Figure 2: inverted vs classic.
  inv, cla = f'p={SCALING_RATE:g}', f'p={SCALING_RATE:g} classic'
  key = jax.random.key(1234)
  probe = x_test[:1000]
  acts = {inv: dropout_activations(scaling_model, kept_params[inv][0], probe,
                                   s.activation_masks, key),
          cla: dropout_activations(classic_model, kept_params[cla][0], probe,
                                   s.activation_masks, key)}
  layers = list(acts[inv])
  fig, axes = common.new_figure(1, 1 + len(layers), width=3.6, height=3.4)
  ax = axes[0, 0]
  for i, name in enumerate((inv, cla)):
    vals = [100 * r['test_accuracy'] for r in records['early_stop'] if r['variant'] == name]
    ax.scatter(np.full(len(vals), i), vals, color='black', s=12, zorder=3)
    ax.bar(i, np.mean(vals), color=['tab:orange', 'tab:purple'][i], alpha=0.6)
  for seed in range(seeds):
    pair = [100 * next(r['test_accuracy'] for r in records['early_stop']
                       if r['variant'] == n and r['seed'] == seed) for n in (inv, cla)]
    ax.plot([0, 1], pair, color='gray', lw=0.7)
  vals_all = [100 * r['test_accuracy'] for r in records['early_stop'] if r['variant'] in (inv, cla)]
  ax.set_ylim(min(vals_all) - 0.5, max(vals_all) + 0.3)
  ax.set_xticks([0, 1], ['inverted', 'classic'])
  ax.set_ylabel('test accuracy (%), early stopping')
  ax.set_title(f'p = {SCALING_RATE:g}, lines pair seeds', fontsize=9)
  act_stats = {}
  for ax, layer in zip(axes[0, 1:], layers):
    act_stats[layer] = {}
    for name, color in ((inv, 'tab:orange'), (cla, 'tab:purple')):
      a = acts[name][layer]
      rel = float(np.linalg.norm(a['training_mean'] - a['inference'])
                  / np.linalg.norm(a['inference']))
      act_stats[layer][name] = {'relative_difference': rel,
                                'mean_inference': float(a['inference'].mean()),
                                'mean_training': float(a['training_mean'].mean())}
      ax.scatter(a['inference'], a['training_mean'], s=4, alpha=0.5, color=color,
                 label=f'{name.split()[-1] if "classic" in name else "inverted"}: '
                       f'rel. diff {100 * rel:.1f}%')
    lim = max(ax.get_xlim()[1], ax.get_ylim()[1])
    ax.plot([0, lim], [0, lim], color='black', lw=0.8)
    ax.set_xlabel('output at inference (mean over examples)')
    ax.set_ylabel(f'training output, mean over {s.activation_masks} masks')
    ax.set_title(f'{layer_title(layer)}: one dot per unit', fontsize=9)
    ax.legend(fontsize=7, frameon=False)
  fig.suptitle(f'Inverted vs classic dropout at p = {SCALING_RATE:g}: test accuracy (left); '
               "each dropout layer's output at inference vs its mean training output",
               fontsize=9)
  fig_scaling = out.figure(fig, 'dropout_scaling.png', 'Inverted vs classic scaling (left) and the '
             f'expected activations of each dropout layer (seed 0, {len(probe):,} test images).')

  # Figure 3: Monte Carlo dropout.
  mc = [mc_dropout_curve(scaling_model, p, x_test, y_test, s.mc_passes,
                         jax.random.key(10_000 + i)) for i, p in enumerate(kept_params[inv])]
  fig, axes = common.new_figure(1, 3, width=4.0, height=3.3)
  ts = np.arange(1, s.mc_passes + 1)
  for ax, metric, label, scale in ((axes[0, 0], 'accuracy', 'test accuracy (%)', 100),
                                   (axes[0, 1], 'nll', 'test NLL (nats)', 1),
                                   (axes[0, 2], 'ece', 'test ECE (%)', 100)):
    curves = np.array([[scale * m[metric] for m in run_mc['mc']] for run_mc in mc])
    det = np.array([scale * run_mc['deterministic'][metric] for run_mc in mc])
    ax.plot(ts, curves.mean(0), color='tab:orange', lw=1.6, label='MC dropout, T passes')
    ax.fill_between(ts, curves.min(0), curves.max(0), color='tab:orange', alpha=0.2, lw=0)
    ax.axhline(det.mean(), color='black', lw=1.2, ls='--', label='deterministic (scaled)')
    ax.axhspan(det.min(), det.max(), color='black', alpha=0.1, lw=0)
    ax.set_xscale('log')
    ax.set_xlabel('T (stochastic forward passes)')
    ax.set_ylabel(label)
  axes[0, 0].legend(fontsize=7, frameon=False)
  fig.suptitle(f'Monte Carlo dropout at inference (p = {SCALING_RATE:g}, early-stopped '
               f'weights, {seeds} seeds, band = min-max)', fontsize=9)
  fig_mc = out.figure(fig, 'dropout_mc.png', 'MC dropout vs the deterministic network: accuracy, '
             'NLL and calibration against the number of passes.')

  # Report tables.
  rule_names = {'early_stop': f'ES on val_loss (patience {s.patience})',
                'early_stop_acc': f'ES on val_accuracy (patience {s.patience})',
                'last': f'last epoch ({s.epochs})'}
  tuned_body = []
  for rule, rows in tuned_summaries.items():
    base_row, row = rows[0], rows[1]
    chosen = [r for r in tuned_records[rule] if r['variant'] == 'dropout (tuned)']
    tuned_body.append([rule_names[rule], common.chosen_text(chosen),
                       f"{100 * base_row['test_acc_mean']:.2f} ± {100 * base_row['test_acc_std']:.2f}",
                       f"{100 * row['test_acc_mean']:.2f} ± {100 * row['test_acc_std']:.2f}",
                       common.diff_text(row), common.p_text(row)])
  body = []
  for name in [v[0] for v in variants]:
    row_es = next(r for r in summaries['early_stop'] if r['variant'] == name)
    row_last = next(r for r in summaries['last'] if r['variant'] == name)
    row_acc = next(r for r in summaries['early_stop_acc'] if r['variant'] == name)
    kept = [r['best_epoch'] + 1 for r in records['early_stop'] if r['variant'] == name]
    body.append([name,
                 f"{100 * row_es['test_acc_mean']:.2f} ± {100 * row_es['test_acc_std']:.2f}",
                 common.diff_text(row_es), common.p_text(row_es), f'{np.mean(kept):.1f}',
                 f"{100 * row_es['gap_mean']:+.2f}",
                 f"{100 * row_acc['test_acc_mean']:.2f} ± {100 * row_acc['test_acc_std']:.2f}",
                 common.diff_text(row_acc), common.p_text(row_acc),
                 f"{100 * row_last['test_acc_mean']:.2f} ± {100 * row_last['test_acc_std']:.2f}",
                 common.diff_text(row_last), common.p_text(row_last)])
  out.add('## Tuned rate',
          f'{data.name}, {len(data.x_train):,} training images (seed k: split seed k), '
          f'validation {len(data.x_val):,}, MLP {"-".join(map(str, s.widths))}, Adam 1e-3, '
          f'batch 32, {s.epochs} epochs, {seeds} seeds. Per seed and rule, the rate in '
          f'{", ".join(n[2:] for n in tuned_rates)} with the best validation accuracy of the '
          'weights the rule keeps; test accuracy % (mean ± std); Δ vs p=0 paired by seed, '
          '95% t-interval; p: sign-flip p / Holm p over the three rules (* = Holm p < 0.05).',
          common.markdown_table(['rule', 'chosen rate', 'p=0 %', 'tuned %',
                                 'Δ pp (95% CI)', 'p / Holm p'], tuned_body))
  out.add('## Rate sweep',
          'Test accuracy % (mean ± std); Δ vs p=0 paired by seed with 95% t-interval; '
          'p: sign-flip p / Holm p over the rates of each rule (* = Holm p < 0.05).',
          common.markdown_table(
              ['variant', 'early stop (val_loss) %', 'Δ pp (95% CI)', 'p / Holm p',
               'epoch kept', 'gap pp', 'early stop (val_accuracy) %', 'Δ pp (95% CI)',
               'p / Holm p', 'last epoch %', 'Δ pp (95% CI)', 'p / Holm p'], body),
          fig_rates)

  def per_seed(rule: str, name: str) -> list[float]:
    return [next(r['test_accuracy'] for r in records[rule]
                 if r['variant'] == name and r['seed'] == k) for k in range(seeds)]

  classic_minus_inverted = {rule: list(np.subtract(per_seed(rule, cla), per_seed(rule, inv)))
                            for rule in records}
  scaling_tests = {rule: common.paired_test(d) for rule, d in classic_minus_inverted.items()}
  for t, p_adj in zip(scaling_tests.values(), common.stats.holm(
      [t['p_value'] for t in scaling_tests.values()])):
    t['p_adjusted'] = float(p_adj)
  out.add('## Inverted vs classic',
          f'Classic minus inverted at p = {SCALING_RATE:g}, test accuracy pp per seed; the '
          'mean with its 95% t-interval, sign-flip p / Holm p over the three rules:',
          common.markdown_table(
              ['rule'] + [f'seed {k}' for k in range(seeds)] + ['mean [95% CI]', 'p / Holm p'],
              [[rule_names[rule]] + [f'{100 * d:+.2f}' for d in diffs]
               + [f"{100 * scaling_tests[rule]['mean']:+.2f} "
                  f"[{100 * scaling_tests[rule]['low']:+.2f}, "
                  f"{100 * scaling_tests[rule]['high']:+.2f}]",
                  f"{scaling_tests[rule]['p_value']:.2g} / "
                  f"{scaling_tests[rule]['p_adjusted']:.2g}"
                  + (' *' if scaling_tests[rule]['p_adjusted'] < 0.05 else '')]
               for rule, diffs in classic_minus_inverted.items()]),
          f'Expected activations (seed 0, {len(probe):,} test images, '
          f'{s.activation_masks} masks): relative difference |E_mask[training output] - '
          'inference output| / |inference output| per layer: '
          + '; '.join(f'{layer_title(layer)}: inverted '
                      f'{100 * st[inv]["relative_difference"]:.2f}%, classic '
                      f'{100 * st[cla]["relative_difference"]:.2f}% (mean unit '
                      f'output at inference: inverted {st[inv]["mean_inference"]:.3f}, '
                      f'classic {st[cla]["mean_inference"]:.3f})'
                      for layer, st in act_stats.items()) + '.', fig_scaling)
  mc_tests = {k: common.paired_test([m['mc'][-1][k] - m['deterministic'][k] for m in mc])
              for k in ('accuracy', 'nll', 'ece')}
  for t, p_adj in zip(mc_tests.values(),
                      common.stats.holm([t['p_value'] for t in mc_tests.values()])):
    t['p_adjusted'] = float(p_adj)
  mc_rows = []
  for t in sorted({1, 2, 5, 10, 20, s.mc_passes} & set(ts)):
    mc_rows.append([f'MC, T={t}'] + [common.pm([m['mc'][t - 1][k] for m in mc],
                                               scale=100 if k != 'nll' else 1,
                                               digits=2 if k != 'nll' else 4)
                                     for k in ('accuracy', 'nll', 'ece')])
  mc_rows.insert(0, ['deterministic'] + [common.pm([m['deterministic'][k] for m in mc],
                                                   scale=100 if k != 'nll' else 1,
                                                   digits=2 if k != 'nll' else 4)
                                         for k in ('accuracy', 'nll', 'ece')])
  out.add('## Monte Carlo dropout',
          f'p = {SCALING_RATE:g}, the early-stopped weights of each seed, the whole test '
          'set; mean ± std over seeds.',
          common.markdown_table(['inference', 'test acc %', 'NLL (nats)', 'ECE %'], mc_rows),
          f'T = {s.mc_passes} minus deterministic, paired by seed: '
          + '; '.join(f"{label} {scale * t['mean']:+.{digits}f} [{scale * t['low']:+.{digits}f}, "
                      f"{scale * t['high']:+.{digits}f}] {unit} (p {t['p_value']:.2g}, Holm "
                      f"{t['p_adjusted']:.2g}{' *' if t['p_adjusted'] < 0.05 else ''})"
                      for (label, scale, digits, unit), t in zip(
                          (('accuracy', 100, 2, 'pp'), ('NLL', 1, 4, 'nats'),
                           ('ECE', 100, 2, 'pp')), mc_tests.values()))
          + '. (Holm over these three.)',
          fig_mc)
  out.results.update({
      'settings': dataclasses.asdict(s) | {'data': data.name, 'n_train': len(data.x_train),
                                           'seeds': seeds},
      'summary': summaries, 'records': records, 'tuned_summary': tuned_summaries,
      'tuned_records': tuned_records, 'classic_minus_inverted_tests': scaling_tests,
      'mc_dropout_tests': mc_tests,
      'curves': {n: [[r['val_loss'] for r in rows] for rows in t]
                 for n, t in trajectories.items()},
      'classic_minus_inverted': classic_minus_inverted, 'activations': act_stats,
      'mc_dropout': mc,
  })
  out.write()
  return out.results


if __name__ == '__main__':
  flags.DEFINE_list('widths', [], 'Hidden widths, e.g. 256,256 (default: 128).')
  flags.DEFINE_integer('epochs', 0, 'Epoch budget (0: the default, 50).', lower_bound=0)
  common.script_main(run, extra_args=lambda f: {
      'widths': tuple(int(w) for w in f.widths), 'epochs': f.epochs}, default_seeds=8)
