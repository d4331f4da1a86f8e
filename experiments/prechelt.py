r"""Experiment 5b: Prechelt's (1998) stopping criteria against patience rules.

  python -m experiments.prechelt --out=/tmp/prechelt \
      [--trajectories=/tmp/exp5/results.json] [--mnist_dir=DIR] [--seeds=10] [--smoke]

L. Prechelt, "Early stopping -- but when?" (Neural Networks: Tricks of the Trade, 1998)
defines three classes of stopping criteria on the validation error E_va(t) after epoch
t and the training error E_tr(t):

  GL_alpha  generalization loss GL(t) = 100 * (E_va(t) / E_opt(t) - 1), with
            E_opt(t) = min over t' <= t of E_va(t'): stop after the first epoch with
            GL(t) > alpha.
  PQ_alpha  the same loss per unit of training progress. Over a strip of k = 5 epochs
            ending at t, P_k(t) = 1000 * (sum_{t'=t-k+1..t} E_tr(t') /
            (k * min_{t'=t-k+1..t} E_tr(t')) - 1); stop after the first end-of-strip
            epoch (t a multiple of k) with GL(t) / P_k(t) > alpha.
  UP_s      stop after the end-of-strip epoch t when the validation error has risen in
            s successive strips: E_va(t - i k) > E_va(t - (i + 1) k) for i = 0..s-1.

Whichever rule stops, the weights of the epoch with the lowest validation error so far
are kept (Prechelt's protocol, and regjax's restore_best); a rule that never fires
trains the whole budget and keeps the best epoch of it. Keras-style patience rules
(regjax's EarlyStopping, restore best) are replayed on the same curves for comparison.

Nothing is trained for the criteria: they are replayed on the per-epoch curves that
experiments/early_stopping.py records (MNIST, 5,000 training images, MLP 256-256, Adam
1e-3, 50 epochs, clean and 20%-noisy training labels, one split per seed) -- read from
its results.json with --trajectories, or trained here the same way when the flag is
absent. The error measure is stated with every number: 'val_loss' (cross-entropy, the
objective, as Prechelt's squared-error percentage was his objective) and 'val_error'
(1 - validation accuracy, the classification error). The training progress P_k always
uses the training loss (training-mode mean over the epoch's batches, Prechelt's E_tr
"measured during the epoch"): the training classification error reaches 0 and would
make P_k undefined.

The test accuracy is read only at the epoch a rule keeps. Each table (one per regime
and error measure) compares every rule with training the whole budget and keeping the
best validation epoch, paired by seed: 95% t-interval, sign-flip p and Holm over the
table's rules.

Writes results.json, report.md and prechelt_tradeoff.png into --out.
"""

import dataclasses
import json
import math
import os
from typing import Any, Callable, Sequence

from absl import flags
import numpy as np

from experiments import common
from experiments import early_stopping as es_experiment
from regjax import report
from regjax.errors import ConfigError

STRIP = 5  # Prechelt's strip length k (epochs).
MEASURES = ('val_loss', 'val_error')
REFERENCE = 'whole budget, best val epoch'


@dataclasses.dataclass(frozen=True)
class Rule:
  """One stopping rule: family 'GL' | 'PQ' | 'UP' | 'patience' and its parameter."""
  family: str
  value: float

  @property
  def name(self) -> str:
    if self.family == 'patience':
      return f'patience {self.value:g}'
    return f'{self.family}{self.value:g}'


# Prechelt's own parameters (GL 1-5, PQ 0.5-3, UP 2-4) and a few beyond them, so the
# trade-off curve also covers slower rules; patience rules as in experiment 5.
PRECHELT_RULES = (tuple(Rule('GL', a) for a in (1, 2, 3, 5))
                  + tuple(Rule('PQ', a) for a in (0.5, 0.75, 1, 2, 3))
                  + tuple(Rule('UP', s) for s in (2, 3, 4)))
RULES = (PRECHELT_RULES
         + tuple(Rule('GL', a) for a in (10, 20, 50))
         + tuple(Rule('PQ', a) for a in (5, 10))
         + (Rule('UP', 1),)
         + tuple(Rule('patience', p) for p in (1, 3, 5, 10, 20)))
# Prechelt's fastest and slowest parameter of each family (his trade-off claim).
FAST_SLOW = {'GL': (1, 5), 'PQ': (0.5, 3), 'UP': (2, 4)}
FAMILY_STYLE = {'GL': ('o', 'tab:blue'), 'PQ': ('s', 'tab:orange'),
                'UP': ('^', 'tab:green'), 'patience': ('D', 'tab:gray')}


# ----------------------------------------------------------------------------- criteria


def generalization_loss(e_va: Sequence[float]) -> np.ndarray:
  """GL(t) = 100 * (E_va(t) / min_{t' <= t} E_va(t') - 1) per epoch, shape (T,).

  0 where the optimum so far is 0 and E_va(t) is too (no loss), inf where it is 0 and
  E_va(t) > 0.
  """
  e = np.asarray(e_va, dtype=np.float64)
  opt = np.minimum.accumulate(e)
  with np.errstate(divide='ignore', invalid='ignore'):
    gl = 100.0 * (e / opt - 1.0)
  return np.where(opt > 0, gl, np.where(e > 0, np.inf, 0.0))


def training_progress(e_tr: Sequence[float], t: int, k: int = STRIP) -> float:
  """P_k(t) = 1000 * (mean of E_tr over the strip ending at t / its minimum - 1).

  t is 0-based and the strip is epochs t-k+1..t (requires t >= k-1); inf when the
  strip's minimum is 0 but not its mean.
  """
  if t < k - 1:
    raise ConfigError('t', t, f'a strip of {k} epochs needs t >= {k - 1}')
  strip = np.asarray(e_tr[t - k + 1:t + 1], dtype=np.float64)
  low = strip.min()
  if low <= 0:
    return math.inf if strip.mean() > 0 else 0.0
  return float(1000.0 * (strip.sum() / (k * low) - 1.0))


def is_strip_end(t: int, k: int = STRIP) -> bool:
  """Whether 0-based epoch t ends a strip (epochs k, 2k, ... counted from 1)."""
  return (t + 1) % k == 0


def stop_epoch(rule: Rule, e_va: Sequence[float], e_tr: Sequence[float],
               k: int = STRIP) -> int | None:
  """The 0-based epoch after which `rule` stops training, or None if it never fires.

  Patience rules are not handled here (see `replay`, which uses regjax's EarlyStopping).
  """
  gl = generalization_loss(e_va)
  n = len(gl)
  if rule.family == 'GL':
    hits = np.flatnonzero(gl > rule.value)
    return int(hits[0]) if len(hits) else None
  if rule.family == 'PQ':
    for t in range(k - 1, n):
      if not is_strip_end(t, k):
        continue
      progress = training_progress(e_tr, t, k)
      if progress == 0:
        quotient = math.inf if gl[t] > 0 else 0.0
      else:
        quotient = gl[t] / progress
      if quotient > rule.value:
        return t
    return None
  if rule.family == 'UP':
    s = int(rule.value)
    for t in range(k - 1, n):
      if not is_strip_end(t, k) or t - s * k < 0:
        continue
      if all(e_va[t - i * k] > e_va[t - (i + 1) * k] for i in range(s)):
        return t
    return None
  raise ConfigError('rule.family', rule.family, 'GL, PQ or UP (patience: use replay)')


def replay(rule: Rule, e_va: Sequence[float], e_tr: Sequence[float]) -> dict[str, Any]:
  """Where `rule` stops on one trajectory and which epoch's weights it keeps.

  Returns {'stop_epoch' (0-based, the last epoch trained), 'epochs_run', 'kept_epoch'
  (lowest validation error up to the stop; the first on ties), 'fired' (bool)}.
  """
  n = len(e_va)
  if rule.family == 'patience':
    rows = [{'epoch': t, 'val_error': float(v)} for t, v in enumerate(e_va)]
    es = common.simulate_early_stopping(rows, int(rule.value), monitor='val_error')
    return {'stop_epoch': es['stop_epoch'], 'epochs_run': es['epochs_run'],
            'kept_epoch': es['kept_epoch'], 'fired': es['stopped']}
  t = stop_epoch(rule, e_va, e_tr)
  last = n - 1 if t is None else t
  kept = int(np.argmin(np.asarray(e_va[:last + 1], dtype=np.float64)))
  return {'stop_epoch': last, 'epochs_run': last + 1, 'kept_epoch': kept,
          'fired': t is not None}


# ----------------------------------------------------------------------------- data


def error_curve(curve: dict[str, Sequence[float]], measure: str) -> list[float]:
  """The validation error of one trajectory under `measure` (see MEASURES)."""
  if measure == 'val_loss':
    return [float(v) for v in curve['val_loss']]
  if measure == 'val_error':
    return [1.0 - float(v) for v in curve['val_accuracy']]
  raise ConfigError('measure', measure, f'one of {", ".join(MEASURES)}')


NEEDED = ('train_loss', 'val_loss', 'val_accuracy', 'test_accuracy', 'trainset_accuracy')


def load_trajectories(path: str) -> tuple[dict[str, list[dict[str, list[float]]]],
                                          dict[str, Any]]:
  """Per regime, the per-seed curves stored by experiments/early_stopping.py.

  Raises ConfigError when the file is missing or holds no per-epoch training loss
  (results of an older early_stopping.py: re-run it, or omit --trajectories).
  """
  if os.path.isdir(path):
    path = os.path.join(path, 'results.json')
  if not os.path.isfile(path):
    raise ConfigError('trajectories', path, 'is not a results.json of experiments/'
                      'early_stopping.py')
  with open(path, encoding='utf-8') as f:
    results = json.load(f)
  regimes = {k: v['curves'] for k, v in results.items()
             if k.startswith('noise=') and isinstance(v, dict) and 'curves' in v}
  if not regimes:
    raise ConfigError('trajectories', path, 'holds no per-seed curves (noise=... entries)')
  for regime, curves in regimes.items():
    for curve in curves:
      missing = [k for k in NEEDED if k not in curve]
      if missing:
        raise ConfigError('trajectories', path,
                          f'{regime} lacks the per-epoch {", ".join(missing)}: written by '
                          'an older experiments/early_stopping.py; re-run it or omit '
                          '--trajectories')
  return regimes, results.get('settings', {})


def train_curves(smoke: bool, mnist_dir: str, seeds: int,
                 log: Callable[[str], None]) -> tuple[dict[str, list[dict[str, list[float]]]],
                                                      dict[str, Any]]:
  """Trains experiment 5's trajectories here (same setting, seeds and splits)."""
  s = es_experiment.SMOKE if smoke else es_experiment.FULL
  base = common.base_config(smoke, mnist_dir)
  runs = es_experiment.train_trajectories(base, s, seeds, log)
  curves = {regime: [{k: [r[k] for r in rows] for k in es_experiment.CURVE_KEYS}
                     for rows in seed_rows] for regime, seed_rows in runs.items()}
  settings = dataclasses.asdict(s) | {'data': base.data.name, 'seeds': seeds}
  return curves, settings


# ----------------------------------------------------------------------------- analysis


def _record(curve: dict[str, Sequence[float]], rule: dict[str, Any], variant: str,
            seed: int) -> dict[str, Any]:
  kept = rule['kept_epoch']
  return {'variant': variant, 'seed': seed, 'test_accuracy': curve['test_accuracy'][kept],
          'train_accuracy': curve['trainset_accuracy'][kept],
          'val_accuracy': curve['val_accuracy'][kept], 'val_loss': curve['val_loss'][kept],
          'best_epoch': kept, 'stop_epoch': rule['stop_epoch'], 'diverged': False}


def analyze(curves: list[dict[str, list[float]]], measure: str,
            rules: Sequence[Rule] = RULES) -> dict[str, Any]:
  """Replays every rule on every seed's curves under one error measure.

  Returns {'rules': [{'rule', 'family', 'value', 'per_seed': [...], 'epochs_mean',
  'test_mean', ...}], 'summary': report.summarize rows against REFERENCE (Holm over the
  rules), 'fast_slow': Prechelt's fastest vs slowest parameter per family}.
  """
  records = []
  per_rule = []
  for seed, curve in enumerate(curves):
    e_va = error_curve(curve, measure)
    whole = replay(Rule('GL', math.inf), e_va, curve['train_loss'])  # Never fires.
    records.append(_record(curve, whole, REFERENCE, seed))
  for rule in rules:
    seeds = []
    for seed, curve in enumerate(curves):
      e_va = error_curve(curve, measure)
      r = replay(rule, e_va, curve['train_loss'])
      r['test_accuracy'] = curve['test_accuracy'][r['kept_epoch']]
      seeds.append(r)
      records.append(_record(curve, r, rule.name, seed))
    per_rule.append({
        'rule': rule.name, 'family': rule.family, 'value': rule.value,
        'prechelt': rule in PRECHELT_RULES, 'per_seed': seeds,
        'epochs_mean': float(np.mean([r['epochs_run'] for r in seeds])),
        'epochs_std': float(np.std([r['epochs_run'] for r in seeds], ddof=1))
                      if len(seeds) > 1 else math.nan,
        'kept_mean': float(np.mean([r['kept_epoch'] + 1 for r in seeds])),
        'fired': sum(r['fired'] for r in seeds),
        'test_mean': float(np.mean([r['test_accuracy'] for r in seeds])),
        'test_std': float(np.std([r['test_accuracy'] for r in seeds], ddof=1))
                    if len(seeds) > 1 else math.nan})
  summary = report.summarize(records, baseline=REFERENCE)
  by_name = {r['rule']: r for r in per_rule}
  fast_slow = {}
  for family, (fast, slow) in FAST_SLOW.items():
    a, b = by_name.get(Rule(family, fast).name), by_name.get(Rule(family, slow).name)
    if a is None or b is None:
      continue
    acc = common.paired_test([y['test_accuracy'] - x['test_accuracy']
                              for x, y in zip(a['per_seed'], b['per_seed'])])
    err_fast = 1.0 - a['test_mean']
    err_slow = 1.0 - b['test_mean']
    fast_slow[family] = {
        'fast': a['rule'], 'slow': b['rule'], 'test_diff': acc,
        'epochs_ratio': b['epochs_mean'] / a['epochs_mean'],
        'relative_error_change': (err_slow - err_fast) / err_fast}
  fams = [k for k in fast_slow]
  adjusted = common.stats.holm([fast_slow[k]['test_diff']['p_value'] for k in fams])
  for k, p in zip(fams, adjusted):
    fast_slow[k]['test_diff']['p_adjusted'] = float(p)
  prechelt = [r for r in per_rule if r['prechelt']]
  rho = _spearman([r['epochs_mean'] for r in prechelt], [r['test_mean'] for r in prechelt])
  return {'measure': measure, 'rules': per_rule, 'summary': summary,
          'records': records, 'fast_slow': fast_slow, 'spearman_epochs_test': rho}


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
  """Spearman rank correlation (average ranks on ties); NaN if either is constant."""
  def ranks(v):
    v = np.asarray(v, dtype=np.float64)
    order = np.argsort(v, kind='stable')
    r = np.empty(len(v))
    r[order] = np.arange(len(v), dtype=np.float64)
    for value in np.unique(v):
      tie = v == value
      r[tie] = r[tie].mean()
    return r
  rx, ry = ranks(x), ranks(y)
  if rx.std() == 0 or ry.std() == 0:
    return math.nan
  return float(np.corrcoef(rx, ry)[0, 1])


# ----------------------------------------------------------------------------- outputs


def _regime_title(regime: str) -> str:
  noise = float(regime.split('=')[1])
  return 'clean labels' if noise == 0 else f'{100 * noise:.0f}% noisy training labels'


def tradeoff_figure(analyses: dict[str, dict[str, dict[str, Any]]], budget: int):
  """Epochs trained (x) vs test accuracy (y), one marker per rule; a panel per regime
  (rows) and error measure (columns). Means over seeds (their spread is in the tables)."""
  regimes = list(analyses)
  fig, axes = common.new_figure(len(regimes), len(MEASURES), width=5.2, height=4.0)
  for i, regime in enumerate(regimes):
    for j, measure in enumerate(MEASURES):
      ax = axes[i, j]
      a = analyses[regime][measure]
      for family, (marker, color) in FAMILY_STYLE.items():
        rules = sorted((r for r in a['rules'] if r['family'] == family),
                       key=lambda r: r['value'])
        xs = [r['epochs_mean'] for r in rules]
        ys = [100 * r['test_mean'] for r in rules]
        ax.plot(xs, ys, marker=marker, color=color, ls='-' if family != 'patience' else ':',
                lw=0.8, ms=6, mfc=color, label=family)
        for r, x, y in zip(rules, xs, ys):
          ax.annotate(f"{r['value']:g}", (x, y), fontsize=6, xytext=(3, 3),
                      textcoords='offset points', color=color)
      ref = next(r for r in a['summary'] if r['variant'] == REFERENCE)
      ax.plot([budget], [100 * ref['test_acc_mean']], 'k*', ms=10,
              label=f'whole budget ({budget}), best val epoch')
      ax.set_xlabel('epochs trained (mean over seeds)')
      ax.set_ylabel('test accuracy (%) of the kept weights')
      ax.set_title(f'{_regime_title(regime)}; error = {measure}', fontsize=9)
  axes[0, 0].legend(fontsize=7, frameon=False, loc='lower right')
  fig.suptitle("Prechelt's criteria (GL alpha, PQ alpha, UP s; labels = parameter) and "
               'patience rules: epochs trained vs test accuracy, mean over seeds', fontsize=9)
  return fig


def _table(a: dict[str, Any], budget: int) -> str:
  """The markdown table of one analysis: the reference, then every rule."""
  summary = {r['variant']: r for r in a['summary']}
  ref = [r for r in a['records'] if r['variant'] == REFERENCE]
  body = [[REFERENCE, f'{budget}', common.pm([r['best_epoch'] + 1 for r in ref], scale=1,
                                             digits=1), '-',
           common.pm([r['test_accuracy'] for r in ref]), '(baseline)', '']]
  for r in a['rules']:
    row = summary[r['rule']]
    body.append([r['rule'] + ('' if r['prechelt'] or r['family'] == 'patience' else ' (ext.)'),
                 common.pm([x['epochs_run'] for x in r['per_seed']], scale=1, digits=1),
                 common.pm([x['kept_epoch'] + 1 for x in r['per_seed']], scale=1, digits=1),
                 f"{r['fired']}/{len(r['per_seed'])}",
                 common.pm([x['test_accuracy'] for x in r['per_seed']]),
                 common.diff_text(row), common.p_text(row)])
  return common.markdown_table(
      ['rule', 'epochs trained', 'kept epoch (1-based)', 'fired', 'test acc %',
       'Δ vs whole budget pp (95% CI)', 'p / Holm p'], body)


def run(out_dir: str, mnist_dir: str, smoke: bool, seeds: int,
        log: Callable[[str], None] = common.log, trajectories: str = '') -> dict[str, Any]:
  """Replays every rule; writes results.json, report.md and prechelt_tradeoff.png."""
  out = common.Outputs(out_dir, "Experiment 5b: Prechelt's stopping criteria")
  if trajectories:
    curves, source_settings = load_trajectories(trajectories)
    source = f'read from {os.path.basename(os.path.dirname(os.path.abspath(trajectories)))}' \
             '/results.json of experiments/early_stopping.py'
  else:
    curves, source_settings = train_curves(smoke, mnist_dir, seeds, log)
    source = 'trained here as experiments/early_stopping.py trains them'
  budget = len(next(iter(curves.values()))[0]['val_loss'])
  analyses = {regime: {m: analyze(c, m) for m in MEASURES} for regime, c in curves.items()}
  for regime, per in analyses.items():
    for m, a in per.items():
      for fam, fs in a['fast_slow'].items():
        log(f"{regime} {m} {fam}: {fs['slow']} - {fs['fast']} = "
            f"{100 * fs['test_diff']['mean']:+.2f} pp, epochs x{fs['epochs_ratio']:.2f}")

  fig = out.figure(tradeoff_figure(analyses, budget), 'prechelt_tradeoff.png',
                   'Epochs trained vs test accuracy for every stopping rule.')
  n_seeds = len(next(iter(curves.values())))
  out.add('## Setting',
          f'Trajectories: {n_seeds} seeds per regime, {budget}-epoch budget, {source} '
          f'({source_settings.get("data", "?")}, MLP '
          f'{"-".join(map(str, source_settings.get("widths", [])))}, training size '
          f'{source_settings.get("train_size", "?") or "all"}). Strip length k = {STRIP}. '
          'Every rule keeps the epoch with the lowest validation error up to its stop '
          '(first on ties); a rule that never fires trains the whole budget. Error '
          'measures: val_loss (cross-entropy) and val_error (1 - validation accuracy); '
          'P_k always from the training loss. "(ext.)": parameters beyond Prechelt\'s own.',
          'Δ: test accuracy minus the whole budget with the best validation epoch kept '
          '(the rule "never stop"), paired by seed, 95% t-interval; p: sign-flip p / Holm '
          'p over the rules of the table (* = Holm p < 0.05).')
  for regime, per in analyses.items():
    for m, a in per.items():
      lines = []
      for fam, fs in a['fast_slow'].items():
        d = fs['test_diff']
        lines.append(f"{fs['slow']} vs {fs['fast']}: {fs['epochs_ratio']:.2f}x the epochs, "
                     f"test accuracy {100 * d['mean']:+.2f} pp [{100 * d['low']:+.2f}, "
                     f"{100 * d['high']:+.2f}] (p {d['p_value']:.2g}, Holm over the "
                     f"families {d['p_adjusted']:.2g}), test error "
                     f"{100 * fs['relative_error_change']:+.1f}% relative")
      out.add(f'## {_regime_title(regime)}, error = {m}', _table(a, budget),
              "Prechelt's slowest vs fastest parameter per family: " + '; '.join(lines)
              + f". Spearman correlation of mean epochs and mean test accuracy over "
              f"Prechelt's 12 criteria: {a['spearman_epochs_test']:.2f}.")
  out.add(fig)
  out.results.update({
      'source': source, 'source_settings': source_settings, 'strip': STRIP,
      'budget': budget, 'seeds': n_seeds,
      'rules': [dataclasses.asdict(r) | {'name': r.name} for r in RULES],
      'analyses': analyses})
  out.write()
  return out.results


if __name__ == '__main__':
  flags.DEFINE_string('trajectories', '', 'results.json (or its folder) of '
                      'experiments/early_stopping.py; empty = train the trajectories here.')
  common.script_main(run, extra_args=lambda f: {'trajectories': f.trajectories},
                     default_seeds=10)
