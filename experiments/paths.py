r"""Ridge and lasso paths of multinomial logistic regression, checked against scikit-learn.

  python -m experiments.paths --out=/tmp/paths [--seeds=8] [--smoke]

The model has no hidden layer (model.widths = (): one Dense layer, 64 inputs -> 10
logits), trained on the embedded 8x8 digits (each seed its own split: data.split_seed =
seed, 20% of the pool for validation; the 450 test images are fixed). regjax minimizes

  ridge  mean cross-entropy + (lambda / 2) * ||W||^2   (penalty.l2 = lambda)
  lasso  mean cross-entropy + lambda * ||W||_1         (optimizer.l1_prox, see below)

over the kernel W (64 x 10; the bias is not penalized), for a grid of lambda, each path
one vmapped RunGroup over lambda x seed. To reach the optimum rather than a noisy point
near it, every step is full batch (train.batch_size = the training set), from W ~ 0
(model.kernel_init_scale = 1e-6), with heavy-ball momentum beta = 0.99 at a constant
learning rate, for a fixed number of steps; the reported weights are the last ones.

Lasso through momentum. regjax's proximal step soft-thresholds the final step by
lr * l1_prox after momentum, so at a fixed point w = prox(w - lr * g / (1 - beta)) the
weights solve the lasso with lambda = (1 - beta) * l1_prox. So
l1_prox = lambda / (1 - beta); the comparison with scikit-learn below checks this.

There is no closed form for softmax regression, so the check is against scikit-learn's
LogisticRegression on the same training matrix. Its objective is
C * sum_i CE_i + r(W) with r = ||W||^2 / 2 (l1_ratio = 0, lbfgs) or ||W||_1
(l1_ratio = 1, saga), the intercept unpenalized. Divided by n * C it is regjax's
mean-loss objective with lambda = 1 / (n * C), i.e. C = 1 / (n * lambda). Reported per
lambda (seed 0): both solutions evaluated in float64 on regjax's objective, the relative
coefficient difference, the zero patterns, and each solution's optimality (KKT)
residual.

Validation loss chooses lambda per seed (tuning.choose; lambda = 0 included); the paths
are drawn for seed 0 with its chosen point, and tuned ridge, tuned lasso and no penalty
are compared on test accuracy, paired by seed.

Outputs in --out: results.json, report.md, paths_coefficients.png.
"""

import dataclasses
from typing import Any, Callable, Mapping, Sequence
import warnings

import matplotlib
import numpy as np
from sklearn import exceptions as sk_exceptions
from sklearn import linear_model

from experiments import common
from experiments.adamw import paired_table, verdict
from regjax import schema
from regjax import stats
from regjax import train
from regjax import tuning
from regjax.data import load_source, split
from regjax.errors import ConfigError

FIGURE = 'paths_coefficients.png'
SELECT = ('val_loss', 'min')
MOMENTUM = 0.99
FORMS = {'ridge': ('ridge (penalty.l2)', 'tab:blue'),
         'lasso': ('lasso (optimizer.l1_prox)', 'tab:red')}
# The sklearn check passes where regjax's objective is within this relative gap of
# scikit-learn's (float64 evaluation of the same objective).
OBJECTIVE_RTOL = 1e-4


@dataclasses.dataclass(frozen=True)
class Settings:
  """Sizes of a run (full or smoke; both on digits)."""
  epochs: int  # = full-batch steps.
  learning_rate: float
  strengths: Mapping[str, tuple[float, ...]]  # lambda per form, 0 first.
  seeds: int
  sklearn_max_iter: int


def make_settings(smoke: bool, seeds: int) -> Settings:
  """The full paths, or two points per path for tests (same data, fewer steps)."""
  if seeds < 2:
    raise ConfigError('seeds', seeds, 'must be >= 2 (paired comparisons)')
  if smoke:
    return Settings(epochs=1000, learning_rate=0.3,
                    strengths={'ridge': (0.0, 1e-2), 'lasso': (0.0, 1e-2)}, seeds=seeds,
                    sklearn_max_iter=5000)
  grid = tuple(float(f'{10 ** (e / 2):.1g}') for e in range(-10, 1))  # 1e-5 .. 1.
  return Settings(epochs=5000, learning_rate=0.3,
                  strengths={'ridge': (0.0,) + grid, 'lasso': (0.0,) + grid[:-2]},
                  seeds=seeds, sklearn_max_iter=20000)


def make_config() -> Any:
  """Full-batch heavy-ball logistic regression on digits (batch size set per split)."""
  c = schema.default_config()
  c.data.name = 'digits'
  c.data.validation_fraction = 0.2
  c.model.widths = ()
  c.model.kernel_init_scale = 1e-6  # Start at W ~ 0, as scikit-learn does.
  c.optimizer.name = 'momentum'
  c.optimizer.momentum = MOMENTUM
  c.early_stopping.enabled = False
  return c


# ----------------------------------------------------------------------------- objective


def _log_softmax(z: np.ndarray) -> np.ndarray:
  z = z - z.max(1, keepdims=True)
  return z - np.log(np.exp(z).sum(1, keepdims=True))


def objective(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, lam: float,
              form: str) -> float:
  """regjax's objective in float64: mean cross-entropy + the form's penalty on w.

  w: (D, K) kernel; b: (K,) bias; x: (n, D); y: (n,) int labels.
  """
  logp = _log_softmax(x @ w + b)
  ce = -float(np.mean(logp[np.arange(len(y)), y]))
  if form == 'ridge':
    return ce + 0.5 * lam * float(np.sum(w ** 2))
  return ce + lam * float(np.sum(np.abs(w)))


def data_gradient(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Gradients of the mean cross-entropy with respect to w (D, K) and b (K,)."""
  p = np.exp(_log_softmax(x @ w + b))
  p[np.arange(len(y)), y] -= 1.0
  return x.T @ p / len(y), p.mean(0)


def kkt_residual(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, lam: float,
                 form: str) -> float:
  """How far (w, b) is from optimal, relative to lambda (0 at the optimum).

  Ridge: max |g + lambda * w| / lambda. Lasso: max over weights of |g + lambda sign w|
  for w != 0 and max(|g| - lambda, 0) for w == 0, over lambda. Both also include the
  bias gradient |g_b| / lambda (unpenalized: 0 at the optimum). g = data gradient.
  """
  g, gb = data_gradient(w, b, x, y)
  if form == 'ridge':
    r = np.abs(g + lam * w)
  else:
    r = np.where(w != 0, np.abs(g + lam * np.sign(w)), np.maximum(np.abs(g) - lam, 0.0))
  return float(max(r.max(), np.abs(gb).max()) / lam)


def sklearn_fit(x: np.ndarray, y: np.ndarray, lam: float, form: str, max_iter: int
                ) -> tuple[np.ndarray, np.ndarray, bool]:
  """scikit-learn's solution of the same objective: C = 1 / (n * lambda).

  Returns (w (D, K), b (K,), converged).
  """
  c = 1.0 / (len(y) * lam)
  if form == 'ridge':
    model = linear_model.LogisticRegression(C=c, l1_ratio=0.0, solver='lbfgs', tol=1e-10,
                                            max_iter=max_iter)
  else:
    model = linear_model.LogisticRegression(C=c, l1_ratio=1.0, solver='saga', tol=1e-8,
                                            max_iter=max_iter)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always', sk_exceptions.ConvergenceWarning)
    model.fit(x, y)
  converged = not any(issubclass(w.category, sk_exceptions.ConvergenceWarning)
                      for w in caught)
  return model.coef_.T.astype(np.float64), model.intercept_.astype(np.float64), converged


def compare(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, lam: float,
            form: str, max_iter: int) -> dict[str, Any]:
  """regjax's (w, b) against scikit-learn's solution at one lambda > 0."""
  ws, bs, converged = sklearn_fit(x, y, lam, form, max_iter)
  j, js = objective(w, b, x, y, lam, form), objective(ws, bs, x, y, lam, form)
  return {
      'lambda': lam, 'sklearn_C': 1.0 / (len(y) * lam), 'sklearn_converged': converged,
      'objective': j, 'objective_sklearn': js, 'objective_gap': (j - js) / abs(js),
      'coef_rel_diff': float(np.linalg.norm(w - ws) / max(np.linalg.norm(ws), 1e-300)),
      'kkt': kkt_residual(w, b, x, y, lam, form),
      'kkt_sklearn': kkt_residual(ws, bs, x, y, lam, form),
      'zeros': int(np.sum(w == 0)), 'zeros_sklearn': int(np.sum(ws == 0)),
      'zero_pattern_agreement': float(np.mean((w == 0) == (ws == 0))),
      'zero_rows': int(np.sum(np.all(w == 0, 1))),
      'zero_rows_sklearn': int(np.sum(np.all(ws == 0, 1))),
      'row_norms_sklearn': np.linalg.norm(ws, axis=1),
  }


# ----------------------------------------------------------------------------- training


def train_form(form: str, s: Settings, base: Any, splits: Sequence[Any],
               log: Callable[[str], None]) -> list[dict[str, Any]]:
  """One form's lambda x seed grid as one vmapped RunGroup; one record per run with the
  final kernel and bias."""
  runs, keys = [], []
  for seed in range(s.seeds):
    for lam in s.strengths[form]:
      field = {'penalty__l2': lam} if form == 'ridge' else {
          'optimizer__l1_prox': lam / (1.0 - MOMENTUM)}
      config = common.override(base, data__split_seed=seed, **field)
      runs.append(train.Run(config, seed, splits[seed]))
      keys.append((lam, seed))
  group = train.RunGroup(runs, penalty_terms=('l2',) if form == 'ridge' else (),
                         include=('l1_prox',) if form == 'lasso' else ())
  log(f'{form}: {len(runs)} runs as one program, {s.epochs} full-batch steps')
  records = []
  for (lam, seed), (record, _, variables) in zip(keys, group.fit()):
    dense = variables['params']['Dense_0']
    records.append({
        'form': form, 'lambda': lam, 'seed': seed,
        **{k: record[k] for k in ('val_accuracy', 'val_loss', 'test_accuracy', 'test_loss',
                                  'train_accuracy', 'train_loss')},
        'diverged': bool(record['diverged']),
        'kernel': np.asarray(dense['kernel'], np.float64),
        'bias': np.asarray(dense['bias'], np.float64)})
  return records


# ----------------------------------------------------------------------------- figure


def path_figure(out: common.Outputs, s: Settings, records: Sequence[Mapping[str, Any]],
                checks: Mapping[str, Sequence[Mapping[str, Any]]],
                chosen: Mapping[str, Mapping[int, Mapping[str, Any]]],
                frequency: np.ndarray) -> str:
  """Seed 0: each input's coefficient-row norm along lambda (regjax lines, scikit-learn
  dots), the chosen lambda, and the agreement with scikit-learn."""
  fig, axes = common.new_figure(2, 2, width=5.2, height=3.8)
  cmap = matplotlib.colormaps['viridis']
  for col, form in enumerate(FORMS):
    ax = axes[0, col]
    lams = [l for l in s.strengths[form] if l > 0]
    rs = [next(r for r in records if r['form'] == form and r['seed'] == 0
               and r['lambda'] == l) for l in lams]
    norms = np.array([np.linalg.norm(r['kernel'], axis=1) for r in rs])  # (L, D)
    sk = np.array([c['row_norms_sklearn'] for c in checks[form]])
    for i in range(norms.shape[1]):
      color = cmap(min(frequency[i], 1.0))
      ax.plot(lams, np.maximum(norms[:, i], 1e-6), color=color, lw=0.9, alpha=0.8)
      ax.plot(lams, np.maximum(sk[:, i], 1e-6), 'o', color=color, ms=2, alpha=0.8)
    pick = chosen[form][0]['lambda']
    if pick > 0:
      ax.axvline(pick, color='black', ls='--', lw=1,
                 label=f'chosen on validation (seed 0): {pick:g}')
    for r in chosen[form].values():
      if r['lambda'] > 0:
        ax.axvline(r['lambda'], color=FORMS[form][1], alpha=0.12, lw=5)
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_ylim(5e-7, None)
    ax.set_xlabel('lambda')
    ax.set_ylabel('||coefficients of input i|| over 10 classes\n(0 drawn at 1e-6)')
    ax.set_title(f'{FORMS[form][0]}: lines regjax, dots scikit-learn\n(colour: share of '
                 'training images where the pixel is non-zero)', fontsize=8)
    if pick > 0:
      ax.legend(fontsize=7, frameon=False, loc='lower left')
  ax = axes[1, 0]
  for form, (label, color) in FORMS.items():
    lams = [c['lambda'] for c in checks[form]]
    ax.plot(lams, [max(c['coef_rel_diff'], 1e-9) for c in checks[form]], color=color,
            marker='o', ms=3, label=f'{label}: ||W - W_sk|| / ||W_sk||')
    ax.plot(lams, [max(c['objective_gap'], 1e-12) for c in checks[form]], color=color,
            ls=':', marker='x', ms=3, label=f'{label}: objective gap')
  ax.axhline(OBJECTIVE_RTOL, color='gray', lw=0.8)
  ax.set_xscale('log')
  ax.set_yscale('log')
  ax.set_xlabel('lambda')
  ax.set_title('regjax vs scikit-learn (seed 0); gray: objective tolerance', fontsize=8)
  ax.legend(fontsize=6.5, frameon=False)
  ax = axes[1, 1]
  for form, (label, color) in FORMS.items():
    lams = [l for l in s.strengths[form] if l > 0]
    vals = np.array([[next(r['val_loss'] for r in records if r['form'] == form
                           and r['seed'] == seed and r['lambda'] == l) for l in lams]
                     for seed in range(s.seeds)])
    ax.plot(lams, vals.mean(0), color=color, marker='o', ms=3, label=f'{label}')
    ax.fill_between(lams, vals.min(0), vals.max(0), color=color, alpha=0.15)
  none = [r['val_loss'] for r in records if r['lambda'] == 0 and r['form'] == 'ridge']
  ax.axhline(np.mean(none), color='gray', ls='--', lw=1, label='lambda = 0 (mean)')
  ax.set_xscale('log')
  ax.set_yscale('log')
  ax.set_xlabel('lambda')
  ax.set_ylabel('validation loss (nats)')
  ax.set_title('validation loss: mean, min-max over seeds', fontsize=8)
  ax.legend(fontsize=7, frameon=False)
  return out.figure(fig, FIGURE,
                    'Coefficient paths of ridge and lasso softmax regression on digits '
                    '(seed 0), their agreement with scikit-learn, and the validation loss '
                    'that chooses lambda.')


# ----------------------------------------------------------------------------- run


def run(out_dir: str, mnist_dir: str, smoke: bool, seeds: int,
        log: Callable[[str], None] = common.log) -> dict[str, Any]:
  """Trains both paths, checks them against scikit-learn, writes `out_dir`.

  mnist_dir is unused (digits only); it is there for the shared flags.
  """
  del mnist_dir
  out = common.Outputs(out_dir, 'Ridge and lasso paths of softmax regression (digits)')
  s = make_settings(smoke, seeds)
  base = make_config()
  raw = load_source(base.data)
  splits = [split(raw, common.override(base, data__split_seed=seed).data)
            for seed in range(s.seeds)]
  base = common.override(base, train__batch_size=splits[0].num_train,
                         train__epochs=s.epochs, optimizer__learning_rate=s.learning_rate)
  records = []
  for form in FORMS:
    records += train_form(form, s, base, splits, log)

  # The scikit-learn check on seed 0's training set, every lambda > 0.
  d0 = splits[0]
  x0 = d0.x_train.reshape(d0.num_train, -1).astype(np.float64)
  y0 = d0.y_train
  checks = {}
  for form in FORMS:
    checks[form] = []
    for r in records:
      if r['form'] == form and r['seed'] == 0 and r['lambda'] > 0:
        checks[form].append(compare(r['kernel'], r['bias'], x0, y0, r['lambda'], form,
                                    s.sklearn_max_iter))
    log(f'{form}: scikit-learn check done')
  chosen = {form: {} for form in FORMS}
  for form in FORMS:
    for seed in range(s.seeds):
      mine = [r for r in records if r['form'] == form and r['seed'] == seed]
      chosen[form][seed] = mine[tuning.choose(mine, *SELECT)]
  none = {r['seed']: r['test_accuracy'] for r in records
          if r['form'] == 'ridge' and r['lambda'] == 0}
  values = {'ridge': {k: r['test_accuracy'] for k, r in chosen['ridge'].items()},
            'lasso': {k: r['test_accuracy'] for k, r in chosen['lasso'].items()},
            'none': none}
  tests = paired_table(values, [('ridge', 'none'), ('lasso', 'none'), ('lasso', 'ridge')])
  frequency = (x0 != 0).mean(0)
  fig = path_figure(out, s, records, checks, chosen, frequency)

  # ---------------------------------------------------------------- report.md
  check_rows = []
  for form in FORMS:
    for c in checks[form]:
      check_rows.append([
          FORMS[form][0], f"{c['lambda']:g}", f"{c['sklearn_C']:.3g}",
          f"{c['objective']:.6f}", f"{c['objective_sklearn']:.6f}",
          f"{c['objective_gap']:+.1e}", f"{c['coef_rel_diff']:.1e}",
          f"{c['kkt']:.1e}", f"{c['kkt_sklearn']:.1e}"
          + ('' if c['sklearn_converged'] else ' (not converged)'),
          *([f"{c['zero_rows']} / {c['zero_rows_sklearn']}",
             f"{c['zeros']} / {c['zeros_sklearn']}",
             f"{100 * c['zero_pattern_agreement']:.1f}"] if form == 'lasso' else ['-'] * 3)])
  passed = {form: [c['lambda'] for c in checks[form]
                   if abs(c['objective_gap']) <= OBJECTIVE_RTOL] for form in FORMS}
  tuned_rows = [[FORMS[f][0] if f in FORMS else 'no penalty (lambda = 0)',
                 ', '.join(f"{r['lambda']:g}" for r in chosen[f].values()) if f in FORMS
                 else '-',
                 common.pm(list(values[f].values()))] for f in ('ridge', 'lasso', 'none')]
  out.add(
      '## Setting',
      f'digits, {d0.num_train:,} training and {d0.num_val:,} validation images per seed '
      f'(each seed its own split), {len(d0.y_test)} test images; softmax regression (64 '
      f'inputs, 10 classes); full-batch heavy ball (momentum {MOMENTUM}, lr '
      f'{s.learning_rate:g}), {s.epochs} steps from W ~ 0, last weights; {s.seeds} seeds. '
      f"Ridge lambda {', '.join(f'{v:g}' for v in s.strengths['ridge'])}; lasso lambda "
      f"{', '.join(f'{v:g}' for v in s.strengths['lasso'])} (l1_prox = lambda / "
      f'{1 - MOMENTUM:g}).',
      '## Against scikit-learn (seed 0)',
      'Same training matrix; C = 1 / (n lambda) with n = '
      f'{d0.num_train}. Objective: regjax\'s, in float64, at each solution (lower is '
      'better); gap = (regjax - sklearn) / sklearn. KKT: the largest violation of the '
      'optimality conditions over lambda (0 at the optimum). Zeros only for the lasso '
      '(ridge weights of always-blank pixels decay towards 0 without reaching it).',
      common.markdown_table(
          ['path', 'lambda', 'C', 'objective regjax', 'objective sklearn', 'gap',
           '||W - W_sk|| / ||W_sk||', 'KKT regjax', 'KKT sklearn',
           'zero input rows regjax / sklearn', 'zero coefficients regjax / sklearn',
           'zero pattern agreement %'], check_rows),
      'Within the objective tolerance '
      f'{OBJECTIVE_RTOL:g}: ' + '; '.join(
          f"{FORMS[f][0]} at lambda {', '.join(f'{v:g}' for v in passed[f]) or 'none'}"
          for f in FORMS) + '.',
      '## Chosen on validation, and test accuracy',
      common.markdown_table(['model', 'chosen lambda per seed', 'test acc %'], tuned_rows),
      common.markdown_table(
          ['comparison', 'difference pp (95% CI)', 'p sign-flip (Holm over 3)', 'verdict'],
          [[f"{r['a']} - {r['b']}", f"{100 * r['diff_mean']:+.2f} [{100 * r['ci_low']:+.2f}, "
            f"{100 * r['ci_high']:+.2f}]", f"{r['p_value']:.3g} ({r['p_adjusted']:.3g})",
            verdict(r, +1)] for r in tests]),
      f"With {s.seeds} seeds the sign-flip p cannot go below "
      f"{stats.min_attainable_p(s.seeds):.3g}.",
      fig)
  for r in records:  # Kernels of seed 0 are kept (the paths); the rest summarized.
    if r['seed'] != 0:
      r['kernel_row_norms'] = np.linalg.norm(r.pop('kernel'), axis=1)
      r['kernel_zeros'] = int(np.sum(r['kernel_row_norms'] == 0))
      del r['bias']
  out.results.update({
      'settings': dataclasses.asdict(s) | {'momentum': MOMENTUM, 'select': list(SELECT),
                                           'objective_rtol': OBJECTIVE_RTOL,
                                           'l1_prox_per_lambda': 1 / (1 - MOMENTUM)},
      'records': records, 'sklearn_checks': checks, 'checks_passed': passed,
      'chosen_lambda': {f: {str(k): r['lambda'] for k, r in ch.items()}
                        for f, ch in chosen.items()},
      'tuned_tests': tests,
  })
  out.write()
  return out.results


if __name__ == '__main__':
  common.script_main(run, default_seeds=8)
