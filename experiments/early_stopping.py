r"""Experiment 5: early stopping -- patience, compute saved vs accuracy lost, restoring.

  python -m experiments.early_stopping --out=/tmp/exp5 [--mnist_dir=DIR] [--seeds=10]
      [--smoke]

A regime that overfits: MNIST, 5,000 training images, MLP 256-256 without
dropout, Adam 1e-3, batch 32, a budget of 50 epochs; once with clean labels and once
with 20% of the training labels redrawn at random (validation and test stay clean).

Each seed trains the whole budget once, evaluating validation and test after every
epoch. Early stopping never changes the path it truncates, so regjax's own
`EarlyStopping` is replayed over the recorded validation curve for every patience
(0, 1, 2, 5, 10, 20, infinite), monitoring val_loss (and, in a second table,
val_accuracy), with and without restoring the best weights. In the spirit of Prechelt
(1998, "Early stopping -- but when?"): compute saved = 1 - epochs run / budget;
accuracy lost = the test accuracy of the oracle epoch (the best test accuracy of the
whole run, known only in hindsight) minus that of the kept weights. One real
`regjax.train.fit` checks that the replay gives the same stop, best epoch and test accuracy.

Each seed k draws its own validation split, training subset and label noise
(data.split_seed = k), so the paired intervals cover split-to-split variance too. The
comparisons with training the whole budget are one Holm family per regime (the rules in
HEADLINE_RULES); results.json keeps every seed's whole per-epoch curves (CURVE_KEYS),
which experiments/prechelt.py replays with other stopping criteria.

Writes results.json, report.md, es_curves.png and es_tradeoff.png into --out.
"""

import dataclasses
from typing import Any, Callable

import numpy as np

from experiments import common
from regjax import report
from regjax import train


@dataclasses.dataclass(frozen=True)
class Setting:
  """Sizes of the experiment (full run or smoke)."""
  widths: tuple[int, ...]
  train_size: int
  epochs: int
  noise_levels: tuple[float, ...]
  patiences: tuple[int | None, ...]
  shown_patience: int


FULL = Setting(widths=(256, 256), train_size=5000, epochs=50, noise_levels=(0.0, 0.2),
               patiences=(0, 1, 2, 5, 10, 20, None), shown_patience=5)
# Digits with noisy labels overfit within seconds, so the smoke run does stop early.
SMOKE = Setting(widths=(128,), train_size=0, epochs=15, noise_levels=(0.3,),
                patiences=(0, 2, None), shown_patience=2)
MONITORS = ('val_loss', 'val_accuracy')
# The rules compared with training the whole budget (one Holm family per regime):
# (monitor, patience, restore). The others are reported without a test.
HEADLINE_RULES = (('val_loss', 1, True), ('val_loss', 5, True), ('val_loss', 5, False),
                  ('val_loss', 10, False), ('val_loss', None, True),
                  ('val_accuracy', 5, True))
SMOKE_HEADLINE_RULES = (('val_loss', 2, True), ('val_loss', 2, False),
                        ('val_accuracy', 2, True))
# Per-epoch metrics kept for every seed in results.json (prechelt.py reads them):
# training-mode means over the epoch's batches ('train_*'), inference mode on the first
# <= 10k training examples ('trainset_*'), validation and test.
CURVE_KEYS = ('train_loss', 'train_accuracy', 'trainset_loss', 'trainset_accuracy',
              'val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')


def patience_name(p: int | None) -> str:
  """The patience as text; None (never stop) is shown as ∞."""
  return '∞' if p is None else str(p)


def rule_name(monitor: str, patience: int | None, restore: bool) -> str:
  """'val_loss, patience 5' / '..., no restore': a rule's variant name."""
  return (f"{monitor}, patience {patience_name(patience)}"
          f"{'' if restore else ', no restore'}")


def regime_config(base, s: Setting, noise: float):
  """The config of one regime (label noise level) of the setting."""
  return common.override(base, data__train_size=s.train_size, model__widths=s.widths,
                         train__epochs=s.epochs, data__label_noise=noise)


def train_trajectories(base, s: Setting, seeds: int,
                       log: Callable[[str], None] = common.log
                       ) -> dict[str, list[list[dict[str, float]]]]:
  """Per regime ('noise=0.2'), one whole-budget trajectory per seed (seed k on split k)."""
  out = {}
  for noise in s.noise_levels:
    regime = f'noise={noise:g}'
    rcfg = regime_config(base, s, noise)
    out[regime] = []
    for seed, data in enumerate(common.seed_splits(rcfg, seeds)):
      rows, _ = common.Trajectory(rcfg, data).run(seed)
      out[regime].append(rows)
      es = common.simulate_early_stopping(rows, s.shown_patience)
      log(f"{regime} seed {seed}: best val_loss epoch {es['best_epoch']}, stop at "
          f"{es['stop_epoch']} (patience {s.shown_patience}); test "
          f"{100 * rows[es['kept_epoch']]['test_accuracy']:.2f}% vs oracle "
          f"{100 * max(r['test_accuracy'] for r in rows):.2f}% vs last "
          f"{100 * rows[-1]['test_accuracy']:.2f}%")
  return out


def evaluate_rules(rows: list[dict[str, float]], patiences, monitor: str
                   ) -> list[dict[str, Any]]:
  """For each patience and restore setting: epochs run, kept epoch and test accuracy."""
  oracle = max(r['test_accuracy'] for r in rows)
  out = []
  for p in patiences:
    for restore in (True, False):
      es = common.simulate_early_stopping(rows, p, monitor=monitor, restore_best=restore)
      acc = rows[es['kept_epoch']]['test_accuracy']
      out.append({'patience': p, 'restore': restore, **es,
                  'compute_saved': 1.0 - es['epochs_run'] / len(rows),
                  'test_accuracy': acc, 'lost_vs_oracle': oracle - acc})
  return out


def run(out_dir: str, mnist_dir: str, smoke: bool, seeds: int,
        log: Callable[[str], None] = common.log) -> dict[str, Any]:
  """Runs both regimes and writes results.json, report.md and the figures."""
  s = SMOKE if smoke else FULL
  out = common.Outputs(out_dir, 'Experiment 5: early stopping')
  base = common.base_config(smoke, mnist_dir)
  results: dict[str, Any] = {}
  curves_fig, curves_axes = common.new_figure(len(s.noise_levels), 3, width=4.0, height=3.1)
  trade_fig, trade_axes = common.new_figure(1, len(s.noise_levels), width=5.0, height=3.8)
  sections = []
  all_runs = train_trajectories(base, s, seeds, log)
  headline = SMOKE_HEADLINE_RULES if smoke else HEADLINE_RULES
  for i, noise in enumerate(s.noise_levels):
    regime = f'noise={noise:g}'
    data = common.seed_splits(regime_config(base, s, noise), 1)[0]
    runs = all_runs[regime]
    per_monitor = {m: [evaluate_rules(rows, s.patiences, m) for rows in runs]
                   for m in MONITORS}

    # Paired comparison of the headline rules with training the whole budget (no early
    # stopping): one Holm family per regime.
    records = []
    for seed, rows in enumerate(runs):
      records.append(common.record_at(rows, len(rows) - 1, 'no early stopping', seed))
      for m in MONITORS:
        for rule in per_monitor[m][seed]:
          if (m, rule['patience'], rule['restore']) in headline:
            records.append(common.record_at(
                rows, rule['kept_epoch'], rule_name(m, rule['patience'], rule['restore']),
                seed, stop_epoch=rule['stop_epoch']))
    summary = report.summarize(records, baseline='no early stopping')

    table = {}
    for m in MONITORS:
      body = []
      for k, rule in enumerate(per_monitor[m][0]):
        vals = [per_monitor[m][seed][k] for seed in range(seeds)]
        name = (f"patience {patience_name(rule['patience'])}"
                f"{'' if rule['restore'] else ', no restore'}")
        row = next((r for r in summary if r['variant'] == rule_name(
            m, rule['patience'], rule['restore'])), None)
        body.append([name, common.pm([v['epochs_run'] for v in vals], scale=1, digits=1),
                     common.pm([v['compute_saved'] for v in vals], digits=0),
                     common.pm([v['test_accuracy'] for v in vals]),
                     common.pm([v['lost_vs_oracle'] for v in vals]),
                     common.diff_text(row) if row else '', common.p_text(row) if row else ''])
      table[m] = body
    last = [rows[-1]['test_accuracy'] for rows in runs]
    oracle = [max(r['test_accuracy'] for r in rows) for rows in runs]
    last_row = ['no early stopping', f'{s.epochs}', '0', common.pm(last),
                common.pm(np.subtract(oracle, last)), '(baseline)', '']
    sections.append((regime, data, table, last_row, oracle))
    results[regime] = {'per_monitor': per_monitor, 'summary': summary, 'records': records,
                       'curves': [{k: [r[k] for r in rows] for k in CURVE_KEYS}
                                  for rows in runs]}

    # Figure 1: validation curves with the stop point and the best epoch.
    title = 'clean labels' if noise == 0 else f'{100 * noise:.0f}% noisy training labels'
    cols = common.colors(seeds)
    for j, (metric, label, scale) in enumerate((('val_loss', 'validation loss (nats)', 1),
                                                ('val_accuracy', 'validation accuracy (%)', 100),
                                                ('test_accuracy', 'test accuracy (%)', 100))):
      ax = curves_axes[i, j]
      for seed, rows in enumerate(runs):
        es = common.simulate_early_stopping(rows, s.shown_patience)
        ep = np.arange(1, len(rows) + 1)
        ax.plot(ep, [scale * r[metric] for r in rows], color=cols[seed], lw=1.0)
        b, st = es['kept_epoch'], es['stop_epoch']
        ax.plot([b + 1], [scale * rows[b][metric]], 'v', color=cols[seed], mec='black',
                mew=0.5, ms=6, label='best (restored) epoch' if seed == 0 else None)
        ax.plot([st + 1], [scale * rows[st][metric]], 'X', color=cols[seed], mec='black',
                mew=0.5, ms=6, label=f'stop (patience {s.shown_patience})' if seed == 0 else None)
      ax.set_xlabel('epoch')
      ax.set_ylabel(label)
      ax.set_title(title, fontsize=9)
      common.integer_x(ax)
      if scale == 100:
        # Skip the first two epochs (far below the rest) so the differences stay visible.
        values = [scale * r[metric] for rows in runs for r in rows[2:]] or [0.0]
        ax.set_ylim(min(values) - 0.5, max(values) + 0.5)
    curves_axes[i, 0].legend(fontsize=7, frameon=False)

    # Figure 2: compute saved vs accuracy lost.
    ax = trade_axes[0, i]
    series = (('val_loss', True, 'o-', 'tab:green', 'val_loss, restore best weights'),
              ('val_loss', False, 's--', 'tab:red', 'val_loss, keep last weights'),
              ('val_accuracy', True, '^-.', 'tab:blue', 'val_accuracy, restore best weights'))
    for monitor, restore, style, color, label in series:
      rules = per_monitor[monitor]
      idx = [k for k, r in enumerate(rules[0]) if r['restore'] == restore]
      xs = np.array([[100 * rules[sd][k]['compute_saved'] for k in idx] for sd in range(seeds)])
      ys = np.array([[100 * rules[sd][k]['lost_vs_oracle'] for k in idx] for sd in range(seeds)])
      ax.errorbar(xs.mean(0), ys.mean(0), yerr=[ys.mean(0) - ys.min(0), ys.max(0) - ys.mean(0)],
                  fmt=style, color=color, ms=4, capsize=2, label=label)
      # Patiences that land on the same point (Keras: 0 and 1 always do) share a label.
      points: dict[tuple[float, float], list[str]] = {}
      for k, x, y in zip(idx, xs.mean(0), ys.mean(0)):
        points.setdefault((round(x, 6), round(y, 6)), []).append(
            patience_name(rules[0][k]['patience']))
      for (x, y), names in points.items():
        ax.annotate(','.join(names), (x, y), fontsize=7, xytext=(4, 3),
                    textcoords='offset points', color=color)
    lost_last = 100 * np.subtract(oracle, last)
    ax.plot([0], [lost_last.mean()], 'k*', ms=9, label=f'no early stopping ({s.epochs} epochs)')
    ax.set_xlabel('compute saved (% of the epoch budget)')
    ax.set_ylabel('test accuracy lost vs oracle epoch (pp)')
    ax.set_title(f'{title} (labels: patience)', fontsize=9)
    ax.legend(fontsize=7, frameon=False)
  curves_fig.suptitle(f'Early stopping on val_loss: one line per seed; ▼ best epoch, '
                      f'X stop (patience {s.shown_patience})', fontsize=9)
  trade_fig.suptitle('Patience sweep: mean over seeds, bars = min-max', fontsize=9)
  fig_curves = out.figure(curves_fig, 'es_curves.png', 'Validation and test curves with '
                          'the stop point and the best (restored) epoch marked.')
  fig_trade = out.figure(trade_fig, 'es_tradeoff.png', 'Compute saved vs test accuracy lost '
                         'relative to the oracle epoch, for each patience.')

  # Check: the replay equals a real train.fit with early stopping.
  check_cfg = common.override(regime_config(base, s, s.noise_levels[0]),
                              early_stopping__patience=s.shown_patience)
  check_data = common.seed_splits(check_cfg, 1)[0]  # Seed 0's split, as its trajectory.
  record, _, _ = train.fit(check_cfg, check_data, 0)
  replay = results[f'noise={s.noise_levels[0]:g}']['per_monitor']['val_loss'][0]
  replay = next(r for r in replay if r['patience'] == s.shown_patience and r['restore'])
  check = {'runner': {k: record[k] for k in ('best_epoch', 'stop_epoch', 'test_accuracy')},
           'replay': {k: replay[k] for k in ('best_epoch', 'stop_epoch', 'test_accuracy')}}
  check['agrees'] = (check['runner']['best_epoch'] == check['replay']['best_epoch']
                     and check['runner']['stop_epoch'] == check['replay']['stop_epoch']
                     and abs(check['runner']['test_accuracy']
                             - check['replay']['test_accuracy']) < 1.5 / len(check_data.y_test))
  log(f'replay check: {check}')

  out.add('## Setting',
          f'{base.data.name}, {sections[0][1].x_train.shape[0]:,} training images, '
          f'validation {len(sections[0][1].x_val):,}, MLP {"-".join(map(str, s.widths))}, '
          f'Adam 1e-3, batch 32, budget {s.epochs} epochs, {seeds} seeds; seed k draws its '
          'own validation split, training subset and label noise (split seed k). Each seed '
          'trains the whole budget once; every early-stopping rule is replayed on its '
          'validation curve with regjax.early_stopping.EarlyStopping.',
          f"Replay check (seed 0, patience {s.shown_patience}, restore): train.fit stopped "
          f"at epoch {check['runner']['stop_epoch']} and kept epoch "
          f"{check['runner']['best_epoch']}, test {100 * check['runner']['test_accuracy']:.2f}%"
          f"; the replay: {check['replay']['stop_epoch']}, {check['replay']['best_epoch']}, "
          f"{100 * check['replay']['test_accuracy']:.2f}% "
          f"({'agree' if check['agrees'] else 'DISAGREE'}).")
  for regime, data, table, last_row, oracle in sections:
    for m in MONITORS:
      out.add(f'## {regime}, monitor {m}',
              'Mean ± std over seeds. Compute saved = 1 - epochs run / budget (%); lost = '
              'oracle test accuracy (best epoch of the run in hindsight, '
              f'{common.pm(oracle)}%) minus the kept weights\' (pp). '
              + 'Δ: test accuracy minus no early stopping, paired by seed, 95% t-interval; '
              'p: sign-flip p / Holm-adjusted p over the '
              f'{len(headline)} compared rules of this regime (* = Holm p < 0.05).',
              common.markdown_table(['rule', 'epochs run', 'compute saved %', 'test acc %',
                                     'lost vs oracle pp', 'Δ vs no early stopping pp',
                                     'p / Holm p'],
                                    ([last_row] if m == 'val_loss' else []) + table[m]))
  out.add(fig_curves, fig_trade)
  results['replay_check'] = check
  results['settings'] = dataclasses.asdict(s) | {'data': base.data.name, 'seeds': seeds}
  out.results.update(results)
  out.write()
  return out.results



if __name__ == '__main__':
  common.script_main(run, default_seeds=10)
