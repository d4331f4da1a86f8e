"""Comparison report: per-variant summary with paired CIs, table, results files, curves.

Pure reporting on top of the training loop's outputs; it never imports the training code.

Inputs:
  * A run record is one dict per (variant, seed): 'test_accuracy', 'train_accuracy', ...
    (accuracies are fractions in [0, 1], evaluated on the final restored weights),
    'best_epoch', 'stop_epoch', 'zero_fraction', 'weight_l2', 'seconds_per_epoch',
    'diverged' (bool), ...
  * A history row is one dict per (variant, seed, epoch): 'val_loss', 'val_accuracy',
    'train_loss', 'train_accuracy', ... as measured during that epoch.

Statistics: the runner gives every variant the same initialisation and data order for the
same seed, so variant and baseline runs with equal seeds are paired and the comparison is
made on the per-seed differences of test accuracy. Pairing removes the seed-to-seed
variance that both runs share, which is usually most of it. Each row gets a t-interval and
a sign-flip permutation p; the table's rows are one family, adjusted by Holm (p) and
Bonferroni (simultaneous intervals). regjax/stats.py explains the choices and their limits.

Files are written atomically (temp file in the same folder, flush + fsync, os.replace) so a
crash or a failed serialization never leaves a half-written results file behind.
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
import contextlib
import csv
import io
import json
import math
import os
import tempfile
from typing import Any, IO

import matplotlib
from matplotlib import figure as mpl_figure
from matplotlib.backends import backend_agg
import numpy as np

from regjax import stats as paired_stats
from regjax.errors import ConfigError

RESULTS_JSON = 'results.json'
RESULTS_CSV = 'results.csv'
METRICS_JSONL = 'metrics.jsonl'

# Summary row keys, in the order they are written to results.csv.
SUMMARY_KEYS = (
    'variant', 'baseline', 'confidence', 'n', 'n_paired', 'diverged',
    'test_acc_mean', 'test_acc_std',
    'diff_mean', 'diff_ci_low', 'diff_ci_high', 'adj_ci_low', 'adj_ci_high',
    'p_value', 'p_t', 'p_adjusted', 'significant',
    'train_acc_mean', 'gap_mean', 'gap_std',
    'best_epoch_mean', 'stop_epoch_mean', 'zero_fraction_mean', 'weight_l2_mean',
    'seconds_per_epoch_mean',
)

DEFAULT_CURVE_METRICS = ('val_loss', 'val_accuracy', 'train_loss', 'train_accuracy')


# ----------------------------------------------------------------------------------------
# Atomic files.


@contextlib.contextmanager
def _atomic_open(path: str, mode: str = 'w') -> Iterator[IO[Any]]:
  """Yields a temp file next to `path`; on success it replaces `path`, else it vanishes.

  The temp file lives in the same folder so os.replace is a same-filesystem rename, which
  POSIX makes atomic: readers see the old file or the new one, never a partial one.
  """
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{os.path.basename(path)}.', suffix='.tmp')
  try:
    encoding = None if 'b' in mode else 'utf-8'
    with os.fdopen(fd, mode, encoding=encoding) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    # mkstemp creates 0600 files; keep the old file's mode, else the usual 0644, so the
    # results stay readable by whoever could read them before.
    try:
      mode_bits = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
      mode_bits = 0o644
    os.chmod(tmp, mode_bits)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise
  _fsync_dir(folder)


def _fsync_dir(folder: str) -> None:
  """Makes the rename itself durable; best effort (some filesystems refuse dir fsync)."""
  with contextlib.suppress(OSError):
    fd = os.open(folder, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)


def atomic_write_text(path: str, text: str) -> None:
  """Writes `text` (UTF-8) to `path` atomically; the parent folder is created if missing."""
  with _atomic_open(path, 'w') as f:
    f.write(text)


def to_jsonable(obj: Any) -> Any:
  """Returns `obj` with NaN/inf -> None, numpy scalars/arrays -> Python, tuples -> lists.

  Objects json cannot encode are left as they are, so json.dumps still raises on them.
  """
  if isinstance(obj, Mapping):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return to_jsonable(obj.tolist())
  if isinstance(obj, np.generic):
    obj = obj.item()
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  return obj


def atomic_write_json(path: str, obj: Any) -> None:
  """Writes `obj` as indented JSON to `path` atomically; NaN and inf become null.

  The text is built before the file is touched, so an unencodable object raises TypeError
  and leaves any existing file at `path` as it was.
  """
  text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + '\n'
  atomic_write_text(path, text)


# ----------------------------------------------------------------------------------------
# Summary statistics.


def _is_diverged(record: Mapping[str, Any]) -> bool:
  # A non-finite test accuracy cannot enter a mean either, whatever the flag says.
  acc = record.get('test_accuracy')
  return bool(record.get('diverged', False)) or acc is None or not math.isfinite(acc)


def _mean(values: Sequence[float]) -> float:
  return float(np.mean(values)) if len(values) else math.nan


def _std(values: Sequence[float]) -> float:
  """Sample standard deviation (ddof=1); NaN for fewer than two values."""
  return float(np.std(values, ddof=1)) if len(values) >= 2 else math.nan


def _field(records: Sequence[Mapping[str, Any]], key: str) -> list[float]:
  return [math.nan if r.get(key) is None else float(r[key]) for r in records]


def _comparison(diffs: np.ndarray, confidence: float) -> dict[str, float]:
  """Per-variant statistics of its paired differences, before the table-wide adjustment.

  Args:
    diffs: shape [n_paired], variant minus baseline test accuracy (fractions).
    confidence: two-sided level of the interval, in (0, 1).

  Returns:
    {'diff_mean', 'diff_ci_low', 'diff_ci_high', 'p_value', 'p_t'}: the t-interval (a
    point for zero spread), the sign-flip p and the t-test p; NaN p with < 2 pairs,
    where no test can be informative and the row stays out of Holm's m.
  """
  mean, low, high = paired_stats.t_interval(diffs, confidence)
  p = paired_stats.sign_flip_test(diffs) if diffs.shape[0] >= 2 else math.nan
  return {'diff_mean': mean, 'diff_ci_low': low, 'diff_ci_high': high, 'p_value': p,
          'p_t': paired_stats.t_test_p(diffs)}


def summarize(records: Sequence[Mapping[str, Any]], baseline: str,
              confidence: float = 0.95) -> list[dict[str, Any]]:
  """One summary row per variant (first-appearance order), compared with `baseline`.

  Diverged runs ('diverged' true, or a non-finite test accuracy) are counted in
  'diverged' and left out of every mean and of the paired difference; 'n' counts the
  seeds that remain. The difference (variant - baseline test accuracy, a fraction) is
  paired by seed: seeds that have a usable run for only one of the two are dropped from
  it, and 'n_paired' counts the seeds used.

  Statistics of the difference (regjax/stats.py says why these):
    * 'diff_ci_low'/'diff_ci_high': `confidence` t-interval, one row at a time; a point
      when every pair differs by the same amount.
    * 'p_value': two-sided paired sign-flip permutation test (exact up to 20 pairs, never
      below 2 / 2^n_paired); 'p_t': the paired t-test p, for reference (NaN at zero spread).
    * 'p_adjusted': Holm over the m non-baseline rows that have a p, so the table as a
      whole controls the chance of any false '*' at 1 - confidence.
    * 'adj_ci_low'/'adj_ci_high': Bonferroni t-interval over the same m rows (level
      1 - (1 - confidence) / m): all m intervals hold together at `confidence`.
    * 'significant': p_adjusted < 1 - confidence.
  With n_paired < 2 there is no interval and no p (NaN) and the row is never
  'significant'. The baseline row has diff_mean 0 and NaN intervals and p-values.

  Args:
    records: run records, one per (variant, seed).
    baseline: name of the variant to compare against.
    confidence: two-sided confidence of the interval, in (0, 1).

  Returns:
    Dicts with the keys in SUMMARY_KEYS; accuracies and differences are fractions,
    'std' values are sample standard deviations (ddof=1; NaN for a single seed).
  """
  if not 0.0 < confidence < 1.0:
    raise ConfigError('confidence', confidence, 'must lie strictly between 0 and 1')
  by_variant: dict[str, list[Mapping[str, Any]]] = {}
  seen: set[tuple[str, int]] = set()
  for r in records:
    key = (r['variant'], int(r['seed']))
    if key in seen:
      raise ConfigError('records', key, 'one run record per (variant, seed)')
    seen.add(key)
    by_variant.setdefault(r['variant'], []).append(r)
  if baseline not in by_variant:
    raise ConfigError('baseline', baseline, f'must be one of the variants {list(by_variant)}')

  def usable_by_seed(variant: str) -> dict[int, float]:
    return {int(r['seed']): float(r['test_accuracy'])
            for r in by_variant[variant] if not _is_diverged(r)}

  nan = math.nan
  base_acc = usable_by_seed(baseline)
  rows, diffs_of = [], {}
  for variant, runs in by_variant.items():
    ok = [r for r in runs if not _is_diverged(r)]
    test_acc = _field(ok, 'test_accuracy')
    train_acc = _field(ok, 'train_accuracy')
    gap = [tr - te for tr, te in zip(train_acc, test_acc)]
    acc = usable_by_seed(variant)
    paired_seeds = sorted(set(acc) & set(base_acc))
    if variant == baseline:
      comparison = {'diff_mean': 0.0, 'diff_ci_low': nan, 'diff_ci_high': nan,
                    'p_value': nan, 'p_t': nan}
    else:
      diffs_of[variant] = np.array([acc[s] - base_acc[s] for s in paired_seeds],
                                   dtype=np.float64)
      comparison = _comparison(diffs_of[variant], confidence)
    rows.append({
        'variant': variant,
        'baseline': baseline,
        'confidence': float(confidence),
        'n': len(ok),
        'n_paired': len(paired_seeds),
        'diverged': len(runs) - len(ok),
        'test_acc_mean': _mean(test_acc),
        'test_acc_std': _std(test_acc),
        **comparison,
        'adj_ci_low': nan,
        'adj_ci_high': nan,
        'p_adjusted': nan,
        'significant': False,
        'train_acc_mean': _mean(train_acc),
        'gap_mean': _mean(gap),
        'gap_std': _std(gap),
        'best_epoch_mean': _mean(_field(ok, 'best_epoch')),
        'stop_epoch_mean': _mean(_field(ok, 'stop_epoch')),
        'zero_fraction_mean': _mean(_field(ok, 'zero_fraction')),
        'weight_l2_mean': _mean(_field(ok, 'weight_l2')),
        'seconds_per_epoch_mean': _mean(_field(ok, 'seconds_per_epoch')),
    })
  # The table is one family of tests: adjust over every row that has a p.
  tested = [r for r in rows if r['variant'] != baseline and math.isfinite(r['p_value'])]
  adjusted = paired_stats.holm([r['p_value'] for r in tested])
  for r, p_adj in zip(tested, adjusted):
    _, low, high = paired_stats.bonferroni_t_interval(
        diffs_of[r['variant']], confidence, len(tested))
    r.update(p_adjusted=float(p_adj), adj_ci_low=low, adj_ci_high=high,
             significant=bool(p_adj < 1.0 - confidence))
  return rows


# ----------------------------------------------------------------------------------------
# Plain-text table.

_NA = 'n/a'


def _fmt(x: float, spec: str, scale: float = 1.0) -> str:
  return _NA if x is None or not math.isfinite(x) else format(x * scale, spec)


def _fmt_pm(mean: float, std: float, scale: float) -> str:
  """'97.41 ± 0.12' (std omitted when NaN, e.g. a single seed)."""
  text = _fmt(mean, '.2f', scale)
  if std is not None and math.isfinite(std):
    text += f' ± {std * scale:.2f}'
  return text


def _fmt_diff(row: Mapping[str, Any], baseline: str) -> str:
  """'+0.35 [-0.10, +0.80]': mean and per-row CI in percentage points."""
  if row['variant'] == baseline:
    return '(baseline)'
  text = _fmt(row['diff_mean'], '+.2f', 100.0)
  if math.isfinite(row['diff_ci_low']):
    text += f" [{row['diff_ci_low'] * 100:+.2f}, {row['diff_ci_high'] * 100:+.2f}]"
  return text


def _fmt_p(p: float | None) -> str:
  """Two significant digits ('0.062', '0.0019', '1'); 'n/a' when missing."""
  return _fmt(p, '.2g')


def _p_adjusted(row: Mapping[str, Any]) -> float:
  # Rows from before the adjustment existed (an old results.json) have no such key.
  p = row.get('p_adjusted')
  return math.nan if p is None else p


def _fmt_p_adj(row: Mapping[str, Any], baseline: str) -> str:
  """Holm-adjusted p, then '*' when it is below 1 - confidence (the row is 'significant')."""
  if row['variant'] == baseline:
    return ''
  return _fmt_p(_p_adjusted(row)) + (' *' if row['significant'] else '')


def _verdict(row: Mapping[str, Any], baseline: str) -> str:
  """One sentence: is the difference from the baseline distinguishable from noise?

  The sentence follows the Holm-adjusted p (as '*' does), not the interval: the two can
  disagree, e.g. 5 identical differences give a point interval but p = 0.0625.
  """
  name = row['variant']
  level = f"{row['confidence'] * 100:g}%"
  n = row['n_paired']
  p, p_adj = row['p_value'], _p_adjusted(row)
  if n < 2 or p is None or not math.isfinite(p):
    return f'{name}: cannot tell, only {n} seed(s) paired with {baseline} (need >= 2).'
  pp = row['diff_mean'] * 100
  ci = f"{level} CI [{row['diff_ci_low'] * 100:+.2f}, {row['diff_ci_high'] * 100:+.2f}]"
  at_floor = p <= paired_stats.min_attainable_p(n) * (1 + 1e-9)
  # Say when the test, not the data, kept a row from '*': more seeds are the only remedy.
  floor = f' (floor for {n} pairs)' if at_floor and not row['significant'] else ''
  ps = f'p={_fmt_p(p)}{floor}, Holm p={_fmt_p(p_adj)}; {n} pairs'
  if not row['significant']:
    return f'{name}: within noise ({pp:+.2f} pp, {ci}; {ps}).'
  word = 'better' if pp > 0 else 'worse'
  return f'{name}: {word} than {baseline} by {abs(pp):.2f} pp ({ci}; {ps}).'


def format_table(rows: Sequence[Mapping[str, Any]], baseline: str) -> str:
  """Fixed-width table of summary rows plus a legend and a verdict per variant.

  Accuracies are shown in percent, differences and gaps in percentage points (pp),
  all with 2 decimals; p-values with 2 significant digits. '*' follows the Holm-adjusted
  p. Fits in 130 columns for variant names up to 20 characters; to make room for the two
  p columns, seconds per epoch live only in results.csv / results.json.

  Args:
    rows: the output of summarize().
    baseline: the variant the differences were computed against.

  Returns:
    Multi-line text without a trailing newline.
  """
  if not rows:
    raise ConfigError('rows', [], 'at least one summary row')
  level = f"{rows[0]['confidence'] * 100:g}%"
  alpha = 1.0 - rows[0]['confidence']
  m = sum(1 for r in rows if r['variant'] != baseline and r['p_value'] is not None
          and math.isfinite(r['p_value']))
  header = ('variant', 'test acc %', f'Δ vs base pp ({level} CI)', 'p', 'p adj',
            'train %', 'gap pp', 'best/stop', 'zeros %', '‖w‖₂', 'n (div)')
  right = (False,) + (True,) * 3 + (False,) + (True,) * (len(header) - 6) + (False,)
  body = []
  for r in rows:
    n = str(r['n']) + (f" ({r['diverged']})" if r['diverged'] else '')
    body.append((
        r['variant'],
        _fmt_pm(r['test_acc_mean'], r['test_acc_std'], 100.0),
        _fmt_diff(r, baseline),
        '' if r['variant'] == baseline else _fmt_p(r['p_value']),
        _fmt_p_adj(r, baseline),
        _fmt(r['train_acc_mean'], '.2f', 100.0),
        _fmt(r['gap_mean'], '+.2f', 100.0),
        f"{_fmt(r['best_epoch_mean'], '.1f')}/{_fmt(r['stop_epoch_mean'], '.1f')}",
        _fmt(r['zero_fraction_mean'], '.2f', 100.0),
        _fmt(r['weight_l2_mean'], '.4g'),
        n,
    ))
  widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]

  def render(cells: Sequence[str]) -> str:
    return '  '.join(c.rjust(w) if rj else c.ljust(w)
                     for c, w, rj in zip(cells, widths, right)).rstrip()

  rule = '-' * len(render(header))
  lines = [render(header), rule, *(render(b) for b in body), rule]
  lines += [
      'test/train acc: mean ± sample std over seeds, on the restored best weights; '
      'gap = train - test acc (mean).',
      f'Δ: test acc minus {baseline}, paired by seed (unpaired seeds dropped): mean and '
      f'{level} t-interval (seed noise only).',
      'p: two-sided paired sign-flip permutation test (exact; n pairs give p >= 2/2^n); '
      f'p adj: Holm over the {m} compared rows;',
      f'* = p adj < {alpha:g}. best/stop: mean epoch of the kept weights / of stopping; '
      'zeros: share of weights exactly 0;',
      'n (div): seeds used in the means (diverged runs, left out); ‖w‖₂: weight L2 norm '
      '(seconds per epoch: results.csv).',
  ]
  lines += [_verdict(r, baseline) for r in rows if r['variant'] != baseline]
  return '\n'.join(lines)


# ----------------------------------------------------------------------------------------
# Results files.


def _csv_cell(value: Any) -> Any:
  # Empty is the CSV convention for a missing number (pandas and R read it as NaN).
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return ''
  return value


def write_results(workdir: str, rows: Sequence[Mapping[str, Any]],
                  records: Sequence[Mapping[str, Any]],
                  baseline: str | None = None,
                  environment: Mapping[str, Any] | None = None) -> dict[str, str]:
  """Writes results.json and results.csv into `workdir`, each atomically.

  results.json: {'baseline': str, 'summary': rows, 'records': records} and, when given,
  'environment' (see regjax.parallel.environment); NaN as null.
  results.csv: a header plus one line per summary row; NaN as an empty cell.

  Args:
    workdir: output folder (created if missing).
    rows: the output of summarize().
    records: the raw run records the rows were computed from.
    baseline: the baseline variant; by default the one named in the rows.
    environment: where the writing process computes (backend, devices, precision,
      versions; a resumed comparison may have begun elsewhere).

  Returns:
    {'json': path, 'csv': path}.
  """
  if baseline is None:
    baseline = rows[0]['baseline'] if rows else None
  paths = {'json': os.path.join(workdir, RESULTS_JSON),
           'csv': os.path.join(workdir, RESULTS_CSV)}
  content = {'baseline': baseline, 'summary': list(rows), 'records': list(records)}
  if environment is not None:
    content['environment'] = dict(environment)
  atomic_write_json(paths['json'], content)
  extra = [k for r in rows for k in r if k not in SUMMARY_KEYS]
  fields = list(SUMMARY_KEYS) + list(dict.fromkeys(extra))
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=fields, lineterminator='\n')
  writer.writeheader()
  for r in rows:
    writer.writerow({k: _csv_cell(r.get(k)) for k in fields})
  atomic_write_text(paths['csv'], buf.getvalue())
  return paths


class MetricsWriter:
  """Appends history rows to a JSON-lines file, one object per line, flushed per line.

  Appending (not rewriting) keeps earlier lines safe if the run is killed; NaN and inf
  are written as null so every line is valid JSON.

  Usage:
    with MetricsWriter(os.path.join(workdir, 'metrics.jsonl')) as w:
      w.write({'variant': 'baseline', 'seed': 0, 'epoch': 1, 'val_loss': 0.3, ...})
  """

  def __init__(self, path: str):
    self.path = path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self._file: IO[str] | None = open(path, 'a', encoding='utf-8')

  def write(self, row: Mapping[str, Any]) -> None:
    """Appends one row as one line and flushes it to the OS."""
    if self._file is None:
      raise ValueError(f'MetricsWriter({self.path!r}) is closed')
    line = json.dumps(to_jsonable(row), allow_nan=False)  # Fails before writing anything.
    self._file.write(line + '\n')
    self._file.flush()

  def write_all(self, rows: Iterable[Mapping[str, Any]]) -> None:
    """Appends each of `rows` (see write)."""
    for row in rows:
      self.write(row)

  def close(self) -> None:
    """Closes the file; further writes raise ValueError."""
    if self._file is not None:
      self._file.close()
      self._file = None

  def __enter__(self) -> 'MetricsWriter':
    return self

  def __exit__(self, *exc_info: Any) -> None:
    self.close()


def read_metrics(path: str) -> list[dict[str, Any]]:
  """Reads a metrics.jsonl back into a list of history rows (null stays None)."""
  with open(path, encoding='utf-8') as f:
    return [json.loads(line) for line in f if line.strip()]


# ----------------------------------------------------------------------------------------
# Learning curves.


def _seed_curves(history: Iterable[Mapping[str, Any]], variant: str,
                 metric: str) -> dict[int, dict[int, float]]:
  """{seed: {epoch: value}} of one variant's metric; missing (None) values skipped."""
  curves: dict[int, dict[int, float]] = {}
  for row in history:
    if row['variant'] == variant and row.get(metric) is not None:
      curves.setdefault(int(row['seed']), {})[int(row['epoch'])] = float(row[metric])
  return curves


def mean_curve(history: Iterable[Mapping[str, Any]], variant: str,
               metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Across-seed summary of one variant's learning curve.

  At each epoch only the seeds still running (with a finite value there) count, so after
  early stopping ends some seeds the later points average fewer of them.

  Returns:
    (epochs, mean, low, high), each of shape [n_epochs], float64; low/high are the
    min/max across the counted seeds. Epochs with no finite value are left out.
  """
  by_epoch: dict[int, list[float]] = {}
  for curve in _seed_curves(history, variant, metric).values():
    for epoch, value in curve.items():
      if math.isfinite(value):
        by_epoch.setdefault(epoch, []).append(value)
  epochs = sorted(by_epoch)
  arrays = (epochs, [np.mean(by_epoch[e]) for e in epochs],
            [min(by_epoch[e]) for e in epochs], [max(by_epoch[e]) for e in epochs])
  return tuple(np.asarray(x, dtype=np.float64) for x in arrays)


def plot_curves(history: Sequence[Mapping[str, Any]], path: str,
                metrics: Sequence[str] | None = None,
                best_epochs: Mapping[tuple[str, int], int] | None = None) -> str:
  """Saves one PNG (dpi 150) with a subplot per metric, epoch on x, a colour per variant.

  Each line is the mean over the seeds still running at that epoch (early stopping ends
  seeds at different epochs, so late points average fewer seeds); the band spans the min
  and max across those seeds. Non-finite values (diverged runs) are left out.

  Args:
    history: history rows with 'variant', 'seed', 'epoch' and each of `metrics`.
    path: the PNG to write (atomically; the folder is created if missing).
    metrics: history keys to plot, one subplot each; None plots those of
      DEFAULT_CURVE_METRICS that the history has (no val_* without a validation split).
    best_epochs: optional {(variant, seed): best epoch}; each seed's value at its best
      epoch gets a marker on the subplots of 'val_*' metrics.

  Returns:
    `path`.
  """
  if not history:
    raise ConfigError('history', [], 'at least one history row to plot')
  present = set().union(*(row.keys() for row in history))
  if metrics is None:
    metrics = [m for m in DEFAULT_CURVE_METRICS if m in present]
  if not metrics:
    raise ConfigError('metrics', metrics, 'at least one history key to plot')
  for m in metrics:
    if m not in present:
      raise ConfigError('metrics', m, f'one of the history keys {sorted(present)}')

  variants = list(dict.fromkeys(row['variant'] for row in history))
  # Figure with an Agg canvas instead of pyplot: no display, no global figure registry to
  # leak, and it is safe to call from a process that already uses another backend.
  ncols = 1 if len(metrics) == 1 else 2
  nrows = math.ceil(len(metrics) / ncols)
  fig = mpl_figure.Figure(figsize=(5.2 * ncols, 3.6 * nrows + 0.4), dpi=150,
                          layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
  cmap = matplotlib.colormaps['tab10' if len(variants) <= 10 else 'tab20']
  for ax, metric in zip(axes, metrics):
    for i, variant in enumerate(variants):
      color = cmap(i % cmap.N)
      per_seed = _seed_curves(history, variant, metric)
      epochs, mean, low, high = mean_curve(history, variant, metric)
      # A lone point (e.g. a run that diverged after one epoch) draws no line: mark it.
      ax.plot(epochs, mean, color=color, lw=1.6, marker='o' if len(epochs) == 1 else None,
              ms=4, label=f'{variant} (n={len(per_seed)} seeds)')
      ax.fill_between(epochs, low, high, color=color, alpha=0.2, lw=0)
      if best_epochs and metric.startswith('val_'):
        xs, ys = [], []
        for seed, curve in per_seed.items():
          best = best_epochs.get((variant, seed))
          if best is not None and best in curve and math.isfinite(curve[best]):
            xs.append(best)
            ys.append(curve[best])
        ax.scatter(xs, ys, color=color, marker='v', s=28, edgecolors='black',
                   linewidths=0.5, zorder=3)
    ax.set_xlabel('epoch (mean over seeds still running)')
    ax.set_ylabel(metric.replace('_', ' '))
    ax.grid(True, alpha=0.3)
  for ax in axes[len(metrics):]:
    ax.set_visible(False)
  axes[0].legend(fontsize=8, frameon=False)
  caption = ('Line: mean over the seeds still training at each epoch; band: min-max '
             'across them; non-finite (diverged) values omitted')
  if best_epochs:
    caption += '; ▼: each seed\'s best (restored) epoch'
  fig.suptitle(caption + '.', fontsize=9)
  with _atomic_open(path, 'wb') as f:
    fig.savefig(f, format='png', dpi=150)
  return path
