r"""Experiment 3: L1 vs L2, proximal vs subgradient L1, and L1 as feature selection.

  python -m experiments.l1_vs_l2 --out=/tmp/exp3 [--mnist_dir=DIR] [--seeds=8] [--smoke]

MNIST, 10,000 images of the training split, MLP 128 (the notebook model
without dropout), Adam 1e-3, batch 32, a fixed budget of 20 epochs (no early stopping,
so that every method has the same number of steps to make weights sparse). Sweeps:

  L2 (coupled)   penalty.l2:              loss + (l2 / 2) * sum w^2
  L1 proximal    optimizer.l1_prox:       after each Adam step, soft-threshold every
                                          kernel weight by lr * l1_prox (exact zeros)
  L1 subgradient optimizer.l1_subgradient: l1 * sign(w) added to the gradient, i.e. the
                                          gradient of loss + l1 * sum |w| (what autodiff
                                          of an L1 penalty gives), through Adam

All runs share one compiled program (the strengths are state, not code). Seed k draws
its own validation split and training subset (data.split_seed = k). The sweep table
compares every strength with no regularization (paired by seed, Holm over the sweep);
the headline table compares each method at the strength chosen PER SEED on validation
accuracy (common.choose_per_seed; the test set never chooses) with no regularization
(Holm over the three methods). For each run:
the share of kernel weights exactly 0, the first-layer weights (784 x 128), and the
input-importance map: the Euclidean norm of each input pixel's row of first-layer
weights, as a 28 x 28 image; a pixel whose whole row is 0 is ignored by the network.

Writes results.json, report.md, l1l2_histograms.png, l1l2_sweep.png and
l1l2_importance.png into --out.
"""

from typing import Any, Callable

import matplotlib
import numpy as np

from experiments import common
from regjax import report

METHODS = {
    'l2': ('L2 (coupled penalty)', 'tab:blue'),
    'l1_prox': ('L1 proximal', 'tab:red'),
    'l1_subgradient': ('L1 subgradient', 'tab:green'),
}
# Ranges found with one seed: from no visible effect to a clear loss of accuracy.
STRENGTHS = {
    'l2': (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    'l1_prox': (3e-3, 1e-2, 3e-2, 1e-1, 3e-1),
    'l1_subgradient': (1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
}
SMOKE_STRENGTHS = {'l2': (1e-3, 1e-2), 'l1_prox': (3e-2, 3e-1),
                   'l1_subgradient': (1e-4, 1e-3)}
TRAIN_SIZE, EPOCHS = 10_000, 20
# "Near zero": |w| at most one Adam step (the learning rate), the size of the oscillation
# a subgradient method leaves around 0.
NEAR_ZERO = 1e-3
# The histograms and maps show, per method, the strongest strength whose mean
# VALIDATION accuracy is within this much of no regularization's (the strongest
# "affordable" one, chosen without the test set).
SHOWCASE_TOLERANCE = 0.02


def _first_kernel(params) -> np.ndarray:
  """The first Dense layer's kernel, (input pixels, hidden units)."""
  return np.asarray(params['Dense_0']['kernel'])


def importance_map(kernel: np.ndarray, height: int, width: int) -> np.ndarray:
  """Per-input-pixel Euclidean norm of a first-layer kernel (H*W, units) -> (H, W).

  In float64: weights that L2 has decayed to ~1e-20 would square to 0 in float32 and
  look like exact zeros.
  """
  return np.linalg.norm(kernel.astype(np.float64), axis=1).reshape(height, width)


def _nan_pm(values) -> str:
  """common.pm over the finite values ('-' if none: e.g. no zeros to locate)."""
  finite = [v for v in values if np.isfinite(v)]
  return common.pm(finite, digits=1) if finite else '-'


def _run_stats(rows, params, always_zero: np.ndarray) -> dict[str, Any]:
  """Sparsity statistics of one finished run (final weights)."""
  w = _first_kernel(params)
  row_zero = np.all(w == 0, axis=1)
  return {
      'test_accuracy': rows[-1]['test_accuracy'],
      'train_accuracy': rows[-1]['trainset_accuracy'],
      'zero_fraction': rows[-1]['zero_fraction'],  # All kernels.
      'first_zero_fraction': float(np.mean(w == 0)),
      'first_near_zero_fraction': float(np.mean(np.abs(w) <= NEAR_ZERO)),
      'zero_rows_fraction': float(np.mean(row_zero)),
      # Of the first layer's exact zeros, the share in rows of always-blank pixels.
      'zeros_in_blank_rows': (float(np.mean(np.broadcast_to(always_zero[:, None],
                                                           w.shape)[w == 0]))
                              if np.any(w == 0) else float('nan')),
      # Of the pixels the network ignores, the share that are 0 in every training image.
      'zero_rows_always_blank': (float(np.mean(always_zero[row_zero])) if row_zero.any()
                                 else float('nan')),
      'weight_l2': rows[-1]['weight_l2'],
  }


def run(out_dir: str, mnist_dir: str, smoke: bool, seeds: int,
        log: Callable[[str], None] = common.log) -> dict[str, Any]:
  """Runs the sweep and writes results.json, report.md and the figures to `out_dir`."""
  out = common.Outputs(out_dir, 'Experiment 3: L1 vs L2')
  base = common.base_config(smoke, mnist_dir)
  cfg = common.override(base, data__train_size=0 if smoke else TRAIN_SIZE,
                        train__epochs=4 if smoke else EPOCHS,
                        early_stopping__enabled=False, model__widths=(128,))
  datas = common.seed_splits(cfg, seeds)
  data = datas[0]
  height, width = data.x_train.shape[1:3]
  strengths = SMOKE_STRENGTHS if smoke else STRENGTHS

  settings = [('none', 0.0)] + [(m, s) for m in METHODS for s in strengths[m]]
  runs: dict[tuple[str, float], list[dict[str, Any]]] = {k: [] for k in settings}
  by_setting: dict[tuple[str, float], list[dict[str, Any]]] = {k: [] for k in settings}
  weights: dict[tuple[str, float], np.ndarray] = {}
  records = []
  for seed, seed_data in enumerate(datas):
    # Pixels that are 0 in every training image of this seed's subset.
    always_zero = np.all(seed_data.x_train.reshape(len(seed_data.x_train), -1) == 0, axis=0)
    if seed == 0:
      always_zero_0 = always_zero
    traj = common.Trajectory(cfg, seed_data, include=('l1_prox', 'l1_subgradient'),
                             penalties=('l2',))
    for method, strength in settings:
      penalty = {'l2': strength if method == 'l2' else 0.0}
      opt = {'l1_prox': strength if method == 'l1_prox' else 0.0,
             'l1_subgradient': strength if method == 'l1_subgradient' else 0.0}
      rows, variables = traj.run(seed, penalty=penalty, optimizer_hparams=opt,
                                 eval_every=cfg.train.epochs)
      stats = _run_stats(rows, variables['params'], always_zero)
      stats['val_accuracy'] = rows[-1]['val_accuracy']
      runs[(method, strength)].append(stats)
      if seed == 0:
        weights[(method, strength)] = _first_kernel(variables['params'])
      name = 'none' if method == 'none' else f'{method}={strength:g}'
      record = common.record_at(rows, len(rows) - 1, name, seed)
      records.append(record)
      by_setting[(method, strength)].append(dict(record, **{
          k: stats[k] for k in ('first_near_zero_fraction', 'zero_rows_fraction')}))
      log(f"{name} seed {seed}: test {100 * stats['test_accuracy']:.2f}%, val "
          f"{100 * stats['val_accuracy']:.2f}%, zeros "
          f"{100 * stats['zero_fraction']:.1f}%, near-zero "
          f"{100 * stats['first_near_zero_fraction']:.1f}%, zero input rows "
          f"{100 * stats['zero_rows_fraction']:.1f}%")
  always_zero = always_zero_0
  summary = report.summarize(records, baseline='none')
  # The headline: each method at its strength chosen per seed on validation accuracy.
  tuned_records = [r for r in records if r['variant'] == 'none']
  for m in METHODS:
    tuned_records += common.choose_per_seed(
        {s: by_setting[(m, s)] for s in strengths[m]}, f'{m} (tuned)')
  tuned_summary = report.summarize(tuned_records, baseline='none')
  tuned = {m: [r for r in tuned_records if r['variant'] == f'{m} (tuned)'] for m in METHODS}
  # Tuned L1-prox against tuned L2, paired by seed (a family of its own: one test).
  prox_vs_l2 = common.paired_test([a['test_accuracy'] - b['test_accuracy']
                                   for a, b in zip(tuned['l1_prox'], tuned['l2'])])

  def mean(method, strength, key):
    return float(np.mean([r[key] for r in runs[(method, strength)]]))

  base_val = mean('none', 0.0, 'val_accuracy')
  showcase = {}
  for m in METHODS:
    ok = [s for s in strengths[m] if mean(m, s, 'val_accuracy') >= base_val - SHOWCASE_TOLERANCE]
    showcase[m] = max(ok) if ok else min(strengths[m])
  shown = [('none', 0.0)] + [(m, showcase[m]) for m in METHODS]
  labels = {('none', 0.0): 'none'}
  labels.update({(m, showcase[m]): f'{METHODS[m][0]} {showcase[m]:g}' for m in METHODS})
  palette = {'none': 'black', **{m: c for m, (_, c) in METHODS.items()}}

  # Figure 1: first-layer weight histograms, linear and |w| on a log scale.
  fig = common.new_canvas(12, 6.4)
  axd = fig.subplot_mosaic([['none', 'l2', 'l1_prox', 'l1_subgradient'],
                            ['log', 'log', 'log', 'log']])
  lim = max(np.percentile(np.abs(weights[k]), 99.5) for k in shown)
  for key in shown:
    w = weights[key].ravel()
    ax = axd[key[0]]
    ax.hist(w, bins=np.linspace(-lim, lim, 121), color=palette[key[0]], alpha=0.8)
    ax.set_yscale('log')
    ax.set_title(f'{labels[key]}\nexactly 0: {100 * np.mean(w == 0):.1f}%', fontsize=9)
    ax.set_xlabel('first-layer weight w')
    ax.grid(True, alpha=0.3)
  axd['none'].set_ylabel('count (log)')
  bins = np.logspace(-9, 0, 91)
  ax = axd['log']
  for key in shown:
    w = np.abs(weights[key].ravel())
    zeros = np.mean(w == 0)
    ax.hist(w[w > 0], bins=bins, histtype='step', lw=1.6, color=palette[key[0]],
            label=f'{labels[key]} (+ {100 * zeros:.1f}% exactly 0, not shown)')
  ax.axvline(NEAR_ZERO, color='gray', ls='--', lw=0.8)
  ax.set_xscale('log')
  ax.set_xlabel('|w| of first-layer weights (log scale; exact zeros cannot be drawn)')
  ax.set_ylabel('count')
  ax.legend(fontsize=8, frameon=False, loc='upper left')
  ax.grid(True, alpha=0.3)
  fig.suptitle(f'First-layer weights after {cfg.train.epochs} epochs (seed 0). Dashed: '
               f'|w| = {NEAR_ZERO:g} (one Adam step)', fontsize=10)
  fig_hist = out.figure(fig, 'l1l2_histograms.png',
             'First-layer weight histograms: proximal L1 sets weights exactly to 0; '
             'the subgradient leaves them small but non-zero.')

  # Figure 2: the strength sweep.
  fig, axes = common.new_figure(1, 3, width=4.3, height=3.5)
  for m, (title, color) in METHODS.items():
    xs = np.array(strengths[m])
    acc = [[100 * r['test_accuracy'] for r in runs[(m, s)]] for s in xs]
    zf = [[100 * r['zero_fraction'] for r in runs[(m, s)]] for s in xs]
    nz = [[100 * r['first_near_zero_fraction'] for r in runs[(m, s)]] for s in xs]
    for ax, vals in ((axes[0, 0], acc), (axes[0, 1], zf)):
      mu = np.mean(vals, 1)
      ax.errorbar(xs, mu, yerr=[mu - np.min(vals, 1), np.max(vals, 1) - mu], color=color,
                  marker='o', ms=4, capsize=2, label=title)
    axes[0, 1].plot(xs, np.mean(nz, 1), color=color, ls=':', marker='x', ms=4)
    axes[0, 2].plot(np.mean(zf, 1), np.mean(acc, 1), color=color, marker='o', ms=4,
                    label=title)
    for s, z, a in zip(xs, np.mean(zf, 1), np.mean(acc, 1)):
      if m != 'l1_prox':
        continue  # The others sit at 0% zeros; their labels would overlap.
      axes[0, 2].annotate(f'{s:g}', (z, a), fontsize=6, xytext=(3, 2),
                          textcoords='offset points')
  for ax in axes[0, :2]:
    ax.set_xscale('log')
    ax.set_xlabel('strength (method units)')
  base_runs = [100 * r['test_accuracy'] for r in runs[('none', 0.0)]]
  for ax in (axes[0, 0], axes[0, 2]):
    ax.axhspan(min(base_runs), max(base_runs), color='gray', alpha=0.25, lw=0,
               label='none (min-max over seeds)')
    ax.set_ylabel('test accuracy (%)')
  axes[0, 0].legend(fontsize=7, frameon=False)
  axes[0, 1].set_ylabel('kernel weights exactly 0 (%)\n(dotted: first layer |w| <= 1e-3)')
  axes[0, 2].set_xlabel('kernel weights exactly 0 (%)')
  axes[0, 2].set_title('accuracy vs sparsity (labels: strength)', fontsize=9)
  fig.suptitle('Strength sweep: mean over seeds, bars = min-max', fontsize=10)
  fig_sweep = out.figure(fig, 'l1l2_sweep.png',
             'Test accuracy and exact-zero fraction along each strength sweep.')

  # Figure 3: input-importance maps.
  fig, axes = common.new_figure(1, 5, width=2.7, height=3.0)
  cmap = matplotlib.colormaps['magma'].with_extremes(under='#2c7fb8')
  for ax, key in zip(axes[0, :4], shown):
    w = weights[key]
    imp = importance_map(w, height, width)
    zero = np.mean(np.all(w == 0, axis=1))
    positive = imp[imp > 0]
    vmin = positive.min() if positive.size else 1e-12
    im = ax.imshow(np.where(imp > 0, imp, vmin / 2), cmap=cmap, vmin=vmin,
                   vmax=imp.max() if imp.max() > 0 else 1)
    ax.set_title(f'{labels[key]}\nrows all zero: {100 * zero:.1f}%', fontsize=8)
    ax.set_xticks([]), ax.set_yticks([])
    ax.grid(False)
    fig.colorbar(im, ax=ax, shrink=0.7)
  ax = axes[0, 4]
  ax.imshow(always_zero.reshape(height, width), cmap='Greys')
  ax.set_title(f'black: pixel 0 in every training\nimage ({100 * always_zero.mean():.1f}%)',
               fontsize=8)
  ax.set_xticks([]), ax.set_yticks([])
  ax.grid(False)
  fig.suptitle('Input importance: per-pixel norm of first-layer weight rows (blue: row '
               'exactly 0, the pixel is ignored)', fontsize=9)
  fig_maps = out.figure(fig, 'l1l2_importance.png',
             'Input-importance maps (seed 0): L1-proximal zeroes whole pixel rows at the '
             'border, i.e. selects features; L2 only shrinks them.')

  table = []
  for (m, s), rs in runs.items():
    name = 'none' if m == 'none' else f'{METHODS[m][0]} {s:g}'
    row = next(r for r in summary if r['variant'] == ('none' if m == 'none' else f'{m}={s:g}'))
    table.append([name, common.pm([r['test_accuracy'] for r in rs]), common.diff_text(row),
                  common.p_text(row),
                  common.pm([r['zero_fraction'] for r in rs], digits=2),
                  common.pm([r['first_near_zero_fraction'] for r in rs], digits=1),
                  common.pm([r['zero_rows_fraction'] for r in rs], digits=1),
                  _nan_pm([r['zeros_in_blank_rows'] for r in rs]),
                  common.pm([r['weight_l2'] for r in rs], scale=1.0)])
  tuned_table = []
  for row in tuned_summary:
    rs = [r for r in tuned_records if r['variant'] == row['variant']]
    tuned_table.append([
        row['variant'], common.chosen_text(rs) if 'chosen' in rs[0] else '-',
        common.pm([r['test_accuracy'] for r in rs]), common.diff_text(row),
        common.p_text(row), common.pm([r['zero_fraction'] for r in rs], digits=2),
        common.pm([r['first_near_zero_fraction'] for r in by_setting[('none', 0.0)]]
                  if row['variant'] == 'none' else
                  [r['first_near_zero_fraction'] for r in rs], digits=1),
        common.pm([r['zero_rows_fraction'] for r in by_setting[('none', 0.0)]]
                  if row['variant'] == 'none' else
                  [r['zero_rows_fraction'] for r in rs], digits=1)])
  out.add(
      '## Setting',
      f'{data.name}, {len(data.x_train):,} training images (seed k: split seed k), MLP 128, '
      f'Adam 1e-3, batch 32, {cfg.train.epochs} epochs, {seeds} seeds, final weights. '
      'Strength units: L2 is '
      'lambda in loss + lambda/2 * sum w^2; L1-prox is lambda in the per-step threshold '
      'lr * lambda; L1-subgradient is lambda in loss + lambda * sum |w|. Only kernels are '
      'regularized (biases are not).',
      '## Tuned: each method at the strength chosen per seed on validation accuracy',
      'Chosen strength: median [min, max] over seeds. Δ vs none: paired by seed, 95% '
      't-interval; p: sign-flip p / Holm p over the three methods (* = Holm p < 0.05).',
      common.markdown_table(
          ['method', 'chosen strength', 'test acc %', 'Δ vs none pp (95% CI)', 'p / Holm p',
           'kernels exactly 0 %', 'first layer |w| <= 1e-3 %',
           'input pixels with all-zero row %'], tuned_table),
      f"Tuned L1-prox minus tuned L2, paired by seed: {100 * prox_vs_l2['mean']:+.2f} pp "
      f"[{100 * prox_vs_l2['low']:+.2f}, {100 * prox_vs_l2['high']:+.2f}], sign-flip p "
      f"{prox_vs_l2['p_value']:.2g}.",
      '## Sweep',
      'Every strength against none, paired by seed; p: sign-flip p / Holm p over all '
      f'{len(table) - 1} strengths.',
      common.markdown_table(
          ['setting', 'test acc %', 'Δ vs none pp (95% CI)', 'p / Holm p',
           'kernels exactly 0 %',
           'first layer |w| <= 1e-3 %', 'input pixels with all-zero row %',
           'first-layer zeros on always-blank pixels %', '‖w‖₂'],
          table),
      f'{100 * always_zero.mean():.1f}% of the input pixels are 0 in every training image '
      '(seed 0\'s subset; each seed counts its own). '
      + ' '.join(
          f'L1 proximal {st:g}: {common.pm([r["zero_rows_fraction"] for r in rs], digits=1)}% '
          'of the pixels have an all-zero row, of which '
          f'{common.pm([r["zero_rows_always_blank"] for r in rs], digits=1)}% are blank in '
          'every training image.'
          for (m, st), rs in runs.items()
          if m == 'l1_prox' and all(r['zero_rows_fraction'] > 0 for r in rs)) + ' '
      'Showcased strengths (figures): per method the strongest with mean validation accuracy '
      f'within {100 * SHOWCASE_TOLERANCE:.1f} pp of none (else the weakest): '
      + ', '.join(f'{METHODS[m][0]} {showcase[m]:g}' for m in METHODS) + '.',
      fig_sweep, fig_hist, fig_maps)
  out.results.update({
      'settings': {'data': data.name, 'n_train': len(data.x_train),
                   'epochs': cfg.train.epochs, 'seeds': seeds, 'widths': [128],
                   'near_zero': NEAR_ZERO, 'strengths': strengths},
      'runs': [{'method': m, 'strength': s, 'seeds': rs} for (m, s), rs in runs.items()],
      'summary': summary, 'records': records, 'showcase': showcase,
      'tuned_summary': tuned_summary, 'tuned_records': tuned_records,
      'tuned_l1_prox_minus_l2': prox_vs_l2,
      'always_zero_pixels_fraction': float(always_zero.mean()),
      'importance_maps': {labels[k]: importance_map(weights[k], height, width)
                          for k in shown},
  })
  out.write()
  return out.results



if __name__ == '__main__':
  common.script_main(run, default_seeds=8)
