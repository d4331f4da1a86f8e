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
import textwrap
from typing import Any, IO

import matplotlib
from matplotlib import figure as mpl_figure
from matplotlib import lines
from matplotlib import ticker
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


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` atomically; the parent folder is created if missing."""
  with _atomic_open(path, 'wb') as f:
    f.write(data)


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
      f'Δ: test acc minus {baseline}, paired by replicate (unpaired ones dropped): mean and '
      f'{level} t-interval',
      'over replicates (their seeds, and their data splits when resampled).',
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


def running_counts(history: Iterable[Mapping[str, Any]],
                   variant: str) -> tuple[np.ndarray, np.ndarray, int]:
  """How many of a variant's runs are still training at each epoch.

  A run counts at an epoch if it has a history row there (whatever the values), so a
  run stopped early, or ended by divergence, no longer counts after its last row.

  Returns:
    (epochs, counts, total): int64 arrays of shape [n_epochs] over the epochs any run
    reached, sorted, and the variant's number of runs (seeds).
  """
  seeds_at: dict[int, set[int]] = {}
  seeds: set[int] = set()
  for row in history:
    if row['variant'] == variant:
      seeds_at.setdefault(int(row['epoch']), set()).add(int(row['seed']))
      seeds.add(int(row['seed']))
  epochs = sorted(seeds_at)
  return (np.asarray(epochs, dtype=np.int64),
          np.asarray([len(seeds_at[e]) for e in epochs], dtype=np.int64), len(seeds))


def _new_figure(width: float, height: float) -> mpl_figure.Figure:
  # Figure with an Agg canvas instead of pyplot: no display, no global figure registry to
  # leak, and it is safe to call from a process that already uses another backend.
  fig = mpl_figure.Figure(figsize=(width, height), dpi=150, layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  return fig


def _save_png(fig: mpl_figure.Figure, path: str) -> str:
  with _atomic_open(path, 'wb') as f:
    fig.savefig(f, format='png', dpi=150)
  return path


def _suptitle(fig: mpl_figure.Figure, title: str) -> None:
  """The figure title, wrapped to the figure's width (about 11 characters per inch at
  11 pt), so a long config-and-data title is never cut at the edges."""
  width = max(40, int(fig.get_figwidth() * 11))
  fig.suptitle('\n'.join(textwrap.wrap(title, width)), fontsize=11)


def _caption(fig: mpl_figure.Figure, text: str, title: str | None) -> None:
  """Title (if any) on top; the caption, wrapped, under the plots."""
  if title:
    _suptitle(fig, title)
  fig.supxlabel('\n'.join(textwrap.wrap(text, 150)), fontsize=8)


def _colors(n: int) -> list[Any]:
  cmap = matplotlib.colormaps['tab10' if n <= 10 else 'tab20']
  return [cmap(i % cmap.N) for i in range(n)]


def _curves_figure(history: Sequence[Mapping[str, Any]], metrics: Sequence[str],
                   best_epochs: Mapping[tuple[str, int], int] | None,
                   title: str | None) -> mpl_figure.Figure:
  variants = list(dict.fromkeys(row['variant'] for row in history))
  ncols = 1 if len(metrics) == 1 else 2
  nrows = math.ceil(len(metrics) / ncols)
  fig = _new_figure(5.2 * ncols, 3.6 * nrows + 1.9)
  grid = fig.add_gridspec(nrows + 1, ncols, height_ratios=[3.0] * nrows + [1.1])
  axes = [fig.add_subplot(grid[i // ncols, i % ncols]) for i in range(len(metrics))]
  count_ax = fig.add_subplot(grid[nrows, :])
  for i, (variant, color) in enumerate(zip(variants, _colors(len(variants)))):
    run_epochs, counts, total = running_counts(history, variant)
    # Offset the steps a little so that variants with equal counts stay visible.
    count_ax.step(run_epochs, counts + 0.06 * (i - (len(variants) - 1) / 2), where='mid',
                  color=color, lw=1.4, label=variant, gid=f'count:{variant}')
    going = dict(zip(run_epochs.tolist(), counts.tolist()))
    for ax, metric in zip(axes, metrics):
      per_seed = _seed_curves(history, variant, metric)
      epochs, mean, low, high = mean_curve(history, variant, metric)
      # Solid while at least half of the variant's runs are still going; after the first
      # epoch with fewer, the mean is a few runs' and noisy: dashed, without a band.
      few = [2 * going.get(int(e), 0) < total for e in epochs]
      cut = few.index(True) if True in few else len(epochs)
      solid = slice(0, cut)
      tail = slice(max(cut - 1, 0), len(epochs))
      # A lone point (e.g. a run that diverged after one epoch) draws no line: mark it.
      ax.plot(epochs[solid], mean[solid], color=color, lw=1.6,
              marker='o' if cut == 1 else None, ms=4, gid=f'solid:{variant}',
              label=f'{variant} (n={len(per_seed)} seeds)')
      ax.fill_between(epochs[solid], low[solid], high[solid], color=color, alpha=0.2, lw=0)
      if cut < len(epochs):
        ax.plot(epochs[tail], mean[tail], color=color, lw=1.0, ls='--',
                gid=f'tail:{variant}')
      if best_epochs and metric.startswith('val_'):
        xs, ys = [], []
        for seed, curve in per_seed.items():
          best = best_epochs.get((variant, seed))
          if best is not None and best in curve and math.isfinite(curve[best]):
            xs.append(best)
            ys.append(curve[best])
        ax.scatter(xs, ys, color=color, marker='v', s=28, edgecolors='black',
                   linewidths=0.5, zorder=3)
  for ax, metric in zip(axes, metrics):
    ax.set_xlabel('epoch')
    ax.set_ylabel(metric.replace('_', ' '))
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # One per axis.
    ax.grid(True, alpha=0.3)
  axes[0].legend(fontsize=8, frameon=False)
  count_ax.set_xlabel('epoch')
  count_ax.set_ylabel('runs still\ntraining', fontsize=8)
  count_ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  count_ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  count_ax.set_ylim(bottom=0)
  count_ax.grid(True, alpha=0.3)
  caption = ('Solid line: mean over the runs still training at each epoch, while at least '
             'half of the variant\'s runs are; dashed: fewer than half are (a few runs, '
             'noisy); band: min-max across the runs (solid part only); non-finite '
             '(diverged) values omitted. Bottom: runs still training per variant')
  if best_epochs:
    caption += '. ▼: each seed\'s best (restored) epoch'
  _caption(fig, caption + '.', title)
  return fig


def plot_curves(history: Sequence[Mapping[str, Any]], path: str,
                metrics: Sequence[str] | None = None,
                best_epochs: Mapping[tuple[str, int], int] | None = None,
                title: str | None = None) -> str:
  """Saves one PNG (dpi 150) with a subplot per metric, epoch on x, a colour per variant.

  Each line is the mean over the runs still training at that epoch (early stopping ends
  seeds at different epochs), solid while at least half of the variant's runs are still
  going and dashed after, where it averages a few runs; the band spans the min and max
  across those runs on the solid part. A panel below counts the runs still going per
  variant (running_counts). Non-finite values (diverged runs) are left out.

  Args:
    history: history rows with 'variant', 'seed', 'epoch' (integer) and each of `metrics`.
    path: the PNG to write (atomically; the folder is created if missing).
    metrics: history keys to plot, one subplot each; None plots those of
      DEFAULT_CURVE_METRICS that the history has (no val_* without a validation split).
    best_epochs: optional {(variant, seed): best epoch}; each seed's value at its best
      epoch gets a marker on the subplots of 'val_*' metrics.
    title: figure title, e.g. 'configs/l2.py on digits, 30% training-label noise'.

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
  return _save_png(_curves_figure(history, metrics, best_epochs, title), path)


# ----------------------------------------------------------------------------------------
# Effects (forest plot).


def _effects_figure(rows: Sequence[Mapping[str, Any]],
                    title: str | None) -> mpl_figure.Figure:
  baseline = rows[0]['baseline']
  compared = [r for r in rows if r['variant'] != baseline]
  level = rows[0]['confidence']
  m = sum(1 for r in compared if math.isfinite(_p_adjusted(r)))
  adj_level = 1.0 - (1.0 - level) / max(m, 1)
  fig = _new_figure(7.5, 1.6 + 0.42 * len(compared))
  ax = fig.add_subplot()
  ys = np.arange(len(compared))[::-1]  # Table order, top to bottom.
  for y, r in zip(ys, compared):
    mean = r['diff_mean'] * 100
    adj = (r.get('adj_ci_low'), r.get('adj_ci_high'))
    if adj[0] is not None and math.isfinite(adj[0]):
      ax.hlines(y, adj[0] * 100, adj[1] * 100, color='tab:blue', lw=7, alpha=0.3,
                gid=f'adj_ci:{r["variant"]}')
    if math.isfinite(r['diff_ci_low']):
      ax.hlines(y, r['diff_ci_low'] * 100, r['diff_ci_high'] * 100, color='black', lw=1.3,
                gid=f'ci:{r["variant"]}')
    if math.isfinite(mean):
      ax.plot([mean], [y], 'o', ms=6, color='black',
              mfc='black' if r['significant'] else 'white', gid=f'mean:{r["variant"]}')
  ax.axvline(0.0, color='gray', lw=1, ls='--')
  ax.set_yticks(ys, [r['variant'] for r in compared])
  ax.set_ylim(-0.7, len(compared) - 0.3)
  pairs = sorted({r['n_paired'] for r in compared})
  n_text = str(pairs[0]) if len(pairs) == 1 else f'{pairs[0]}-{pairs[-1]}'
  ax.set_xlabel(f'Δ test accuracy vs {baseline} (percentage points); '
                f'{n_text} paired replicates')
  ax.grid(True, axis='x', alpha=0.3)
  # The adjusted p of each row on a twin axis's tick labels, so the layout makes room.
  right = ax.twinx()
  right.set_ylim(ax.get_ylim())
  right.set_yticks(ys, [f'p adj {_fmt_p(_p_adjusted(r))}' + (' *' if r['significant']
                                                             else '') for r in compared])
  right.tick_params(axis='y', length=0, labelsize=8)
  handles = [
      lines.Line2D([], [], color='black', lw=1.3, label=f'{level * 100:g}% CI (per row)'),
      lines.Line2D([], [], color='tab:blue', lw=7, alpha=0.3,
                   label=f'{adj_level * 100:.3g}% CI (Bonferroni over {m} rows: '
                         f'{level * 100:g}% jointly)'),
      lines.Line2D([], [], marker='o', ls='', color='black', mfc='black',
                   label=f'Holm-adjusted p < {1 - level:g} (*)'),
      lines.Line2D([], [], marker='o', ls='', color='black', mfc='white',
                   label=f'Holm-adjusted p >= {1 - level:g}'),
  ]
  fig.legend(handles=handles, loc='outside lower center', ncols=2, fontsize=8,
             frameon=False)
  _suptitle(fig, title or f'Effects vs {baseline}: mean paired difference in test accuracy')
  return fig


def plot_effects(rows: Sequence[Mapping[str, Any]], path: str,
                 title: str | None = None) -> str:
  """Saves a forest plot (PNG, dpi 150) of each variant's difference from the baseline.

  One row per non-baseline variant, top to bottom in table order: the mean difference in
  percentage points (dot: filled when Holm-adjusted p < 1 - confidence, i.e. '*'), its
  per-row t-interval (thin black) and the Bonferroni-adjusted interval (thick, light;
  all rows' adjusted intervals hold together at `confidence`), a dashed line at 0, and
  the adjusted p at the right. A row with < 2 pairs shows only its mean (if any).

  Args:
    rows: the output of summarize() (baseline row included or not).
    path: the PNG to write (atomically; the folder is created if missing).
    title: figure title; by default it names the baseline.

  Returns:
    `path`.
  """
  if not rows or not any(r['variant'] != r['baseline'] for r in rows):
    raise ConfigError('rows', [r['variant'] for r in rows],
                      'at least one variant besides the baseline')
  return _save_png(_effects_figure(rows, title), path)


# ----------------------------------------------------------------------------------------
# Selection (tuned comparisons).

_SELECTION_METRICS = ('val_accuracy', 'test_accuracy')


def _fmt_value(value: Any) -> str:
  if isinstance(value, (float, np.floating)):
    return f'{value:g}'
  return str(value)


def _is_number(value: Any) -> bool:
  return (isinstance(value, (int, float, np.integer, np.floating))
          and not isinstance(value, bool) and math.isfinite(value))


def grid_axis(fields: Sequence[str],
              grid: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, list[str], str]:
  """Where each grid point of a tuned variant sits on the selection plot's x axis.

  * One numeric field with values >= 0, some > 0: x = log10(value), so a strength grid
    (1e-4, 1e-3, ...) is evenly spaced; a 0 (the untuned setting) sits 1.5 grid steps
    left of the smallest positive value, its own position labelled '0'.
  * One numeric field with a negative value: x = value (linear).
  * Several fields (e.g. dropout rate x max-norm), non-numeric values or no field: x =
    grid index, labelled 'a/b' with the values in `fields` order. An index keeps every
    point visible whatever the grid's shape (a heatmap would need a full rectangular
    grid and could show only one of the two accuracies).

  Args:
    fields: the dotted config fields the grid varies; may be empty (untuned).
    grid: shape [G] of {field: value}.

  Returns:
    (positions, tick labels, x-axis label): float64 [G], G strings, one string.
  """
  if len(fields) == 1:
    field = fields[0]
    values = [point[field] for point in grid]
    if all(_is_number(v) for v in values):
      if min(values) >= 0 and max(values) > 0:
        logs = sorted({math.log10(v) for v in values if v > 0})
        step = float(np.median(np.diff(logs))) if len(logs) > 1 else 1.0
        zero = logs[0] - 1.5 * step
        positions = [math.log10(v) if v > 0 else zero for v in values]
        return (np.asarray(positions, dtype=np.float64), [_fmt_value(v) for v in values],
                f'{field} (log scale)')
      if min(values) < 0:
        return np.asarray(values, dtype=np.float64), [_fmt_value(v) for v in values], field
  labels = ['/'.join(_fmt_value(point[f]) for f in fields) or 'untuned' for point in grid]
  return np.arange(len(grid), dtype=np.float64), labels, ' / '.join(fields)


def _check_selection(selection: Sequence[Mapping[str, Any]]) -> None:
  if not selection:
    raise ConfigError('selection', [], 'at least one variant')
  for entry in selection:
    name = entry.get('variant', '?')
    fields, grid, reps = entry.get('fields'), entry.get('grid'), entry.get('replicates')
    if fields is None or not grid or not reps:
      raise ConfigError('selection', name, "needs 'variant', 'fields', a non-empty "
                        "'grid' and non-empty 'replicates'")
    for point in grid:
      missing = [f for f in fields if f not in point]
      if missing:
        raise ConfigError('selection', name, f'every grid point sets {list(fields)}; '
                          f'one lacks {missing}')
    for rep in reps:
      points, chosen = rep.get('points'), rep.get('chosen')
      if points is None or len(points) != len(grid):
        raise ConfigError('selection', name, f"each replicate's 'points' has one entry "
                          f'per grid point ({len(grid)})')
      if (isinstance(chosen, bool) or not isinstance(chosen, (int, np.integer))
          or not 0 <= chosen < len(grid)):
        raise ConfigError('selection', chosen, f"'chosen' of {name}: a grid index in "
                          f'[0, {len(grid)})')


def _selection_arrays(entry: Mapping[str, Any], metric: str) -> np.ndarray:
  """[R, G] percent values of `metric`; None or non-finite (diverged) -> NaN."""
  return np.asarray(
      [[math.nan if p.get(metric) is None else float(p[metric]) * 100 for p in r['points']]
       for r in entry['replicates']], dtype=np.float64)


def _column_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(mean, min, max) over axis 0 of [R, G] ignoring NaN; NaN where a column has none."""
  finite = np.isfinite(values)
  count = finite.sum(axis=0)
  have = count > 0
  mean = np.where(have, np.where(finite, values, 0.0).sum(axis=0) / np.maximum(count, 1),
                  np.nan)
  low = np.where(have, np.where(finite, values, np.inf).min(axis=0), np.nan)
  high = np.where(have, np.where(finite, values, -np.inf).max(axis=0), np.nan)
  return mean, low, high


def _selection_figure(selection: Sequence[Mapping[str, Any]],
                      title: str | None) -> mpl_figure.Figure:
  ncols = min(3, len(selection))
  nrows = math.ceil(len(selection) / ncols)
  fig = _new_figure(4.4 * ncols, 3.3 * nrows + 1.0)
  axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
  styles = {'val_accuracy': ('tab:blue', '--', 'validation'),
            'test_accuracy': ('tab:orange', '-', 'test')}
  for ax, entry in zip(axes, selection):
    x, settings, xlabel = grid_axis(entry['fields'], entry['grid'])
    order = np.argsort(x, kind='stable')
    chosen = np.asarray([r['chosen'] for r in entry['replicates']])
    reps = len(chosen)
    for metric in _SELECTION_METRICS:
      color, ls, name = styles[metric]
      values = _selection_arrays(entry, metric)
      mean, low, high = _column_stats(values)
      # One setting (untuned): validation and test side by side, the band as a bar.
      xs = x + ((-0.1 if metric == 'val_accuracy' else 0.1) if len(x) == 1 else 0.0)
      ax.plot(xs[order], mean[order], color=color, ls=ls, lw=1.6,
              marker='o' if len(x) == 1 else None, ms=5, gid=f'{metric}:{entry["variant"]}')
      if len(x) > 1:
        ax.fill_between(x[order], low[order], high[order], color=color, alpha=0.18, lw=0)
      else:
        ax.vlines(xs, low, high, color=color, alpha=0.3, lw=8)
        ax.set_xlim(x[0] - 1.0, x[0] + 1.0)
      # Each replicate's chosen point, at that replicate's own value.
      ax.scatter(xs[chosen], values[np.arange(reps), chosen], color=color,
                 marker='v' if metric == 'val_accuracy' else '^', s=30, edgecolors='black',
                 linewidths=0.5, zorder=3, gid=f'chosen_{metric}:{entry["variant"]}')
    # 'k/R' under a setting's tick: k of the R replicates chose it (markers can overlap).
    labels = list(settings)
    for index, count in zip(*np.unique(chosen, return_counts=True)):
      labels[index] += f'\n{count}/{reps}'
    if xlabel.endswith('(log scale)') and '0' in settings:
      # The 0 is not on the log scale: a dotted break separates it from the rest.
      zero = x[settings.index('0')]
      ax.axvline((zero + np.min(x[x > zero])) / 2, color='gray', lw=0.8, ls=':')
    ax.set_xticks(x, labels, rotation=45 if len(x) > 5 else 0, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel('accuracy %')
    ax.set_title(f'{entry["variant"]} ({reps} replicates)', fontsize=9)
    ax.grid(True, alpha=0.3)
  for ax in axes[len(selection):]:
    ax.set_visible(False)
  handles = [lines.Line2D([], [], color=c, ls=ls, lw=1.6, label=f'{name} (mean)')
             for c, ls, name in styles.values()]
  handles += [lines.Line2D([], [], ls='', marker=mk, color='gray', mec='black', label=lb)
              for mk, lb in (('v', 'chosen: its validation acc.'),
                             ('^', 'chosen: its test acc.'))]
  fig.legend(handles=handles, loc='outside right center', fontsize=8, frameon=False)
  _caption(fig, 'Accuracy against the tuned setting: mean over replicates with a min-max '
           'band; markers: each replicate\'s chosen setting at its own accuracies; k/R under '
           'a setting: k of the R replicates chose it.', title)
  return fig


def plot_selection(selection: Sequence[Mapping[str, Any]], path: str,
                   title: str | None = None) -> str:
  """Saves a PNG (dpi 150) of how each tuned variant's setting was chosen.

  One subplot per variant: validation and test accuracy (%) against the grid setting
  (x axis as grid_axis: log scale for one positive field, with 0 at its own position;
  grid index labelled 'a/b' for several fields), the mean over replicates with a min-max
  band, and each replicate's chosen point marked at its own validation (▼) and test (▲)
  accuracy, with 'k/R' above a setting that k of the R replicates chose. A variant with a
  single grid point (untuned) shows that point.

  Args:
    selection: one entry per variant, in plotting order:
      {'variant': str,
       'fields': [dotted config field, ...]  (may be empty for an untuned variant),
       'grid': [{field: value, ...}, ...]  (G points, each setting every field),
       'replicates': [  (R of them, e.g. one per seed)
           {'points': [{'val_accuracy': float, 'test_accuracy': float, ...}, ...]  (G,
                        in grid order; accuracies as fractions in [0, 1]; None or NaN
                        for a diverged run, left out of the mean and band; other keys,
                        e.g. 'val_metric', the number the selection maximized, ignored),
            'chosen': int  (index into 'grid' that this replicate selected)},
           ...]}
    path: the PNG to write (atomically; the folder is created if missing).
    title: figure title, e.g. the config and the data.

  Returns:
    `path`.
  """
  _check_selection(selection)
  return _save_png(_selection_figure(selection, title), path)
