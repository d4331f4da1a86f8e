"""What the experiments of part A share: flags, data, per-epoch trajectories, offline
early stopping, figures and report text.

The central idea is `Trajectory`: train one (config, seed) for the whole epoch budget and
evaluate the validation and test sets after EVERY epoch. Early stopping never changes the
training path (it only truncates it), so one full-length trajectory answers every
early-stopping setting exactly: `simulate_early_stopping` replays regjax's own
`EarlyStopping` state machine over the recorded validation curve, and the test accuracy
of the kept weights is read off the curve at the epoch it keeps. Model selection only
ever looks at validation metrics; the per-epoch test numbers are read at the selected
epoch (or plotted as curves), never used to choose.

A trajectory is regjax's one training program (regjax/program.py) with an evaluation
hook, so its first epochs are the very epochs `regjax.train.fit(config, data, seed)`
trains.
"""

import dataclasses
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import matplotlib
from matplotlib import figure as mpl_figure
from matplotlib import ticker
from matplotlib.backends import backend_agg
import ml_collections
import numpy as np
import PIL.Image

from regjax import data as data_lib
from regjax import early_stopping as early_stopping_lib
from regjax import regularizers
from regjax import report
from regjax import schema
from regjax import stats
from regjax import train
from regjax import trainer as trainer_lib
from regjax import tuning
from regjax.data import Dataset
from regjax.early_stopping import EarlyStopping
from regjax.errors import ConfigError, find_config_error
from regjax.program import EvalSet

REPO_ROOT = Path(__file__).resolve().parents[1]
# Largest training subset evaluated in inference mode each epoch (a fixed prefix of the
# already shuffled training split): enough for a train accuracy to 0.1 pp, cheaper than 54k.
TRAIN_EVAL_SIZE = 10_000
# Dots per inch of saved figures: sharp in a README, small enough to commit (< 300 KB).
DPI = 120


# ----------------------------------------------------------------------------- flags


def define_flags(default_seeds: int,
                 seeds_help: str = 'Replicate seeds per setting (>= 2).',
                 min_seeds: int = 2) -> None:
  """Defines the common flags; called from `__main__` only, so imports define none.

  (Importing every experiment into one test process must not define `--out` twice.)
  """
  flags.DEFINE_string('out', None, 'Output folder (created).', required=True)
  flags.DEFINE_string('mnist_dir', default_mnist_dir(),
                      'Folder with the four MNIST IDX files; empty = TFDS.')
  flags.DEFINE_bool('smoke', False, 'Seconds-long form on the embedded digits data.')
  flags.DEFINE_integer('seeds', default_seeds, seeds_help, lower_bound=min_seeds)


EXIT_BAD_INPUT = 2


def run_or_fail(fn: Callable[[], Any]) -> Any:
  """Calls fn(); bad input (a ConfigError) becomes one line on stderr and exit status 2."""
  try:
    return fn()
  except ConfigError as e:
    found = find_config_error(e) or e
    print(f'experiments: error: {" ".join(str(found).split())}', file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def script_main(run: Callable[..., Any],
                extra_args: Callable[[Any], Mapping[str, Any]] = lambda f: {},
                **flag_kwargs: Any) -> None:
  """The `__main__` of an experiment script: defines the common flags
  (`define_flags(**flag_kwargs)`), parses them and calls
  `run(out, mnist_dir, smoke, seeds, **extra_args(flags.FLAGS))` through `run_or_fail`.
  A script with flags of its own defines them before calling this."""
  define_flags(**flag_kwargs)

  def main(argv: list[str]) -> None:
    del argv
    f = flags.FLAGS
    run_or_fail(lambda: run(f.out, f.mnist_dir, f.smoke, f.seeds, **extra_args(f)))

  app.run(main)


def default_mnist_dir() -> str:
  """$REGJAX_MNIST_DIR, else ../shared/data/mnist beside the repo if it exists, else ''."""
  env = os.environ.get('REGJAX_MNIST_DIR')
  if env:
    return env
  shared = REPO_ROOT.parent / 'shared' / 'data' / 'mnist'
  return str(shared) if shared.is_dir() else ''


def log(line: str) -> None:
  """Progress line to stdout, flushed (runs take minutes; output may go to a file)."""
  print(line, flush=True)


# ----------------------------------------------------------------------------- config


def base_config(smoke: bool, mnist_dir: str) -> ml_collections.ConfigDict:
  """The schema defaults on MNIST (`mnist_dir`, '' = TFDS), or on digits when `smoke`.

  Smoke runs use the embedded 8x8 digits so that tests need no files and take seconds.
  """
  c = schema.default_config()
  if smoke:
    c.data.name = 'digits'
  else:
    c.data.name, c.data.dir = 'mnist', mnist_dir
  return c


def override(config: ml_collections.ConfigDict, **dotted: Any) -> ml_collections.ConfigDict:
  """A copy of `config` with 'section__field=value' overrides, e.g. model__widths=(512,)."""
  c = ml_collections.ConfigDict(config.to_dict())
  for key, value in dotted.items():
    section, field = key.split('__')
    c[section][field] = value
  return c


# Where a validation metric chooses a strength (or a rate, a patience) per seed: the
# validation accuracy of the weights a run reports. It is what the headline numbers
# measure (test accuracy), and unlike the validation loss it does not reward a network
# for being unconfident (experiments 1 and 5: the loss rises while accuracy still improves).
SELECT_METRIC = 'val_accuracy'

_SOURCES: dict[tuple[str, str], Any] = {}


def seed_splits(config: ml_collections.ConfigDict, seeds: int, resample: bool = True
                ) -> list[Dataset]:
  """One Dataset per replicate seed 0..seeds-1, all splits of one loaded source.

  With `resample`, seed k's split uses `data.split_seed + k` (its own validation split,
  training subsample and label noise, as regjax's replicates do: intervals then cover
  the variance over data splits too); without it, every seed gets `data.split_seed`.
  The source is loaded once per (name, dir) in this process; inputs are shared.
  """
  key = (config.data.name, config.data.dir)
  if key not in _SOURCES:
    _SOURCES[key] = data_lib.load_source(config.data)
  source = _SOURCES[key]
  base = config.data.split_seed
  return [data_lib.split(source, override(
      config, data__split_seed=base + (k if resample else 0)).data) for k in range(seeds)]


# ----------------------------------------------------------------------------- training


class Trajectory:
  """Trains one config for all `train.epochs`, evaluating every epoch (see module doc).

  A run is regjax's one training program (regjax/program.py) with early stopping off
  and two extra per-epoch evaluation sets: 'trainset' (the first <= 10k training
  examples, in inference mode) and 'test'. Every seed and every strength reuses one
  compiled program: penalty strengths are arguments, and the penalties and optimizer
  strengths named in `penalties` / `include` are kept in the program even at 0 (an exact
  no-op there) so that `run(..., penalty=..., optimizer_hparams=...)` can set them per
  run. Only those and the config's own (strength > 0) are in the program, as in
  `regjax.train.fit`: a zero-strength term changes nothing mathematically, but it
  changes how XLA rounds, and Adam carries such differences into a visibly different
  path within an epoch. So a trajectory of a config trains, step for step, what
  `train.fit` trains for it (experiment 5 checks this), until early stopping stops it.
  """

  def __init__(self, config: ml_collections.ConfigDict, data: Dataset,
               include: Sequence[str] = (), penalties: Sequence[str] = ()):
    """Prepares the runs of `config` on `data` (validates the config)."""
    self.config = override(config, early_stopping__enabled=False)
    self.data = data
    self.include = tuple(include) + tuple(
        t for t in trainer_lib.active_transforms(config) if t not in include)
    self.penalties = tuple(
        e for e in regularizers.penalty_names()
        if e in penalties or e in trainer_lib.active_penalties(config))
    n_eval = min(TRAIN_EVAL_SIZE, data.num_train)
    self.sets = (
        EvalSet('trainset', 'pool', data.train_idx[:n_eval], data.y_train[:n_eval]),
        EvalSet('test', 'test', None, data.y_test))
    self.trainer = trainer_lib.make_trainer(
        self.config, data.num_classes, data.num_train, include=self.include,
        penalty_terms=self.penalties)

  def run(self, seed: int, on_epoch: Callable[[int, Any], None] | None = None,
          penalty: Mapping[str, float] | None = None,
          optimizer_hparams: Mapping[str, float] | None = None, eval_every: int = 1
          ) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """Trains seed `seed` for the whole budget.

    Args:
      seed: the run's seed (regjax/trainer.py `run_keys`).
      on_epoch: called as on_epoch(epoch, train state) after each epoch (e.g. to keep
        weights).
      penalty: overrides of the coupled strengths {'l1', 'l2'} for this run; each term
        must be in the program (config value > 0 or named in `penalties`).
      optimizer_hparams: overrides of optimizer fields (e.g. {'l1_prox': 1.0}); each
        transform must be in the chain (config value > 0 or named in `include`).
      eval_every: evaluate the extra sets after every this many epochs and after the
        last one; the other rows hold NaN for them.
    Returns:
      (rows, variables). One row per epoch (0-based 'epoch'): 'train_loss',
      'train_accuracy' (training-mode means over the epoch's batches), 'train_penalty',
      inference-mode 'trainset_*' (first <= 10k training examples), 'val_*' and 'test_*'
      loss (mean cross-entropy, nats) and accuracy (fraction), the weight statistics
      'weight_l1', 'weight_l2', 'zero_fraction', and 'seconds' (wall clock); and the
      final {'params', 'batch_stats'}. A run whose training loss turns non-finite stops.
    """
    config = override(self.config, **{f'penalty__{k}': float(v)
                                      for k, v in (penalty or {}).items()},
                      **{f'optimizer__{k}': float(v)
                         for k, v in (optimizer_hparams or {}).items()})
    for name in (optimizer_hparams or {}):
      if name not in self.include and float(optimizer_hparams[name]) > 0:
        raise ConfigError(f'optimizer.{name}', optimizer_hparams[name],
                          f'not in this Trajectory\'s chain: pass include=({name!r},)')
    for name in (penalty or {}):
      if name not in self.penalties and float(penalty[name]) > 0:
        raise ConfigError(f'penalty.{name}', penalty[name],
                          f'not in this Trajectory\'s loss: pass penalties=({name!r},)')
    group = train.RunGroup([train.Run(config, seed, self.data)], eval_sets=self.sets,
                           penalty_terms=self.penalties, include=self.include)
    hook = None if on_epoch is None else (lambda _, epoch, state: on_epoch(epoch, state))
    ((_, rows, variables),) = group.fit(evaluate_sets_every=eval_every, on_state=hook)
    return rows, variables


# ----------------------------------------------------------------------------- early stopping

INFINITE = None  # Patience that never stops (the whole budget, then restore if asked).


def simulate_early_stopping(rows: Sequence[Mapping[str, float]], patience: int | None,
                            monitor: str = 'val_loss', restore_best: bool = True,
                            min_delta: float = 0.0) -> dict[str, Any]:
  """Replays regjax's `EarlyStopping` over a recorded trajectory.

  The state machine sees exactly what the training program shows it (one metrics row
  per epoch); the "weights" it keeps are the epoch index, so `best_variables` names the
  epoch whose weights `regjax.train.fit` would have returned.

  Args:
    rows: per-epoch rows of `Trajectory.run` (must contain `monitor`).
    patience: epochs without improvement before stopping; None = never stop.
    monitor: the watched metric (mode from its name: max for *accuracy, else min).
    restore_best: keep the best epoch's weights (else the last epoch trained).
    min_delta: an improvement must beat the best by more than this.
  Returns:
    {'stop_epoch': last epoch trained (0-based), 'epochs_run', 'best_epoch' (by the
     monitor; -1 if none), 'kept_epoch' (whose weights are kept), 'stopped' (bool)}.
  """
  es = EarlyStopping(monitor=monitor, mode='auto', min_delta=min_delta,
                     patience=len(rows) + 1 if patience is None else patience,
                     restore_best=restore_best)
  state = es.init(jnp.int32(-1), {})
  for row in rows:
    state = es.update(state, {monitor: row[monitor]}, jnp.int32(row['epoch']), {})
    if bool(state.stopped):
      break
  last = int(state.epoch) - 1
  kept, _ = es.best_variables(state, jnp.int32(last), {})
  return {'stop_epoch': last, 'epochs_run': last + 1, 'best_epoch': int(state.best_epoch),
          'kept_epoch': max(int(kept), 0), 'stopped': bool(state.stopped)}


def record_at(rows: Sequence[Mapping[str, float]], epoch: int, variant: str, seed: int,
              **extra: Any) -> dict[str, Any]:
  """A `report.summarize` run record for the weights of `epoch` of a trajectory.

  'train_accuracy' is the inference-mode accuracy on the training subset, so the
  summary's gap is train minus test accuracy of the same weights.
  """
  r = rows[epoch]
  return {'variant': variant, 'seed': seed, 'test_accuracy': r['test_accuracy'],
          'test_loss': r['test_loss'], 'train_accuracy': r['trainset_accuracy'],
          'val_accuracy': r.get('val_accuracy', math.nan),
          'val_loss': r.get('val_loss', math.nan), 'best_epoch': epoch,
          'stop_epoch': extra.pop('stop_epoch', len(rows) - 1),
          'zero_fraction': r['zero_fraction'], 'weight_l2': r['weight_l2'],
          'seconds_per_epoch': float(np.mean([q['seconds'] for q in rows])),
          'diverged': not math.isfinite(r['train_loss']), **extra}


# ----------------------------------------------------------------------------- statistics


def choose_per_seed(candidates: Mapping[Any, Sequence[Mapping[str, Any]]], name: str,
                    metric: str = SELECT_METRIC) -> list[dict[str, Any]]:
  """A tuned variant's records: per seed, the candidate best on validation.

  Args:
    candidates: setting label -> its run records, one per seed in the same seed order
      for every label (e.g. {0.1: [seed 0, seed 1, ...], 0.3: [...]}), each with
      `metric` (validation only: `tuning.choose` never reads a test number).
    name: the tuned variant's name ('variant' of the returned records).
    metric: the validation metric; its mode follows its name (max for *accuracy).
  Returns:
    One record per seed: the chosen candidate's record with 'variant' = name, 'chosen'
    (its label) and 'chosen_index' (its position in `candidates`). Ties go to the first
    label; a diverged candidate is never chosen unless all are.
  """
  labels = list(candidates)
  mode = early_stopping_lib.resolve_mode('auto', metric)
  seeds = {len(candidates[label]) for label in labels}
  if len(seeds) != 1:
    raise ConfigError('candidates', sorted(seeds), 'the same number of seeds per setting')
  out = []
  for k in range(seeds.pop()):
    records = [candidates[label][k] for label in labels]
    if len({int(r['seed']) for r in records}) != 1:
      raise ConfigError('candidates', [r['seed'] for r in records],
                        'records of one seed at each position')
    j = tuning.choose(records, metric, mode)
    out.append(dict(records[j], variant=name, chosen=labels[j], chosen_index=j))
  return out


def chosen_text(records: Sequence[Mapping[str, Any]]) -> str:
  """'0.3 [0.1, 0.5]': median [min, max] of the labels `choose_per_seed` chose."""
  values = sorted(float(r['chosen']) for r in records)
  return f'{float(np.median(values)):g} [{values[0]:g}, {values[-1]:g}]'


def holm_over(rows: Sequence[dict[str, Any]], alpha: float = 0.05) -> None:
  """Re-adjusts `report.summarize` rows from several tables as ONE Holm family.

  Sets 'p_adjusted' and 'significant' (p_adjusted < alpha) in place on every row that
  has a finite 'p_value' (baseline rows have none and are left as they are).
  """
  tested = [r for r in rows if r.get('p_value') is not None and math.isfinite(r['p_value'])
            and r['variant'] != r['baseline']]
  for r, p in zip(tested, stats.holm([r['p_value'] for r in tested])):
    r.update(p_adjusted=float(p), significant=bool(p < alpha))


def paired_rows(named: Sequence[tuple[str, Sequence[float]]], alpha: float = 0.05
                ) -> list[dict[str, Any]]:
  """Paired differences per row: mean, 95% t-interval, sign-flip p, Holm over the rows.

  named: (name, per-seed differences). A row is 'significant' when its Holm-adjusted p
  is below alpha; 'min_p' is the smallest p its number of pairs can give.
  """
  rows = []
  for name, diffs in named:
    d = np.asarray(diffs, np.float64)
    mean, low, high = stats.t_interval(d)
    rows.append({'name': name, 'diffs': d.tolist(), 'n': len(d), 'mean': mean,
                 'ci_low': low, 'ci_high': high,
                 'p_value': stats.sign_flip_test(d) if len(d) >= 2 else math.nan,
                 'min_p': stats.min_attainable_p(len(d)) if len(d) >= 2 else math.nan})
  adjusted = stats.holm([r['p_value'] for r in rows])
  for r, p in zip(rows, adjusted):
    r['p_adjusted'] = float(p)
    r['significant'] = bool(math.isfinite(p) and p < alpha)
  return rows


def p_text(row: Mapping[str, Any]) -> str:
  """'0.0078 / 0.031 *': sign-flip p / Holm-adjusted p of a summary row ('*' when
  the adjusted p is below 0.05); '' for the baseline."""
  if row['variant'] == row['baseline'] or row.get('p_value') is None or not math.isfinite(
      row['p_value']):
    return ''
  return (f"{row['p_value']:.2g} / {row['p_adjusted']:.2g}"
          + (' *' if row['significant'] else ''))


def paired_test(diffs: Sequence[float]) -> dict[str, float]:
  """Mean, 95% t-interval and sign-flip p of paired differences (any unit)."""
  d = np.asarray(diffs, dtype=np.float64)
  mean, low, high = stats.t_interval(d)
  return {'mean': mean, 'low': low, 'high': high,
          'p_value': stats.sign_flip_test(d) if len(d) >= 2 else math.nan, 'n': len(d)}


def pm(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
  """'97.41 ± 0.12': mean ± sample std (ddof=1) of `values` times `scale`."""
  v = np.asarray(values, dtype=np.float64) * scale
  if len(v) < 2:
    return f'{v.mean():.{digits}f}'
  return f'{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}'


def diff_text(row: Mapping[str, Any]) -> str:
  """'+0.35 [-0.10, +0.80]' pp from a `report.summarize` row: the mean and 95% t-interval
  of the paired difference; ' *' when the row is 'significant' (its Holm-adjusted
  sign-flip p is below 0.05; the interval alone decides nothing)."""
  if row['variant'] == row['baseline']:
    return '(baseline)'
  text = f"{row['diff_mean'] * 100:+.2f}"
  if math.isfinite(row['diff_ci_low']):
    text += f" [{row['diff_ci_low'] * 100:+.2f}, {row['diff_ci_high'] * 100:+.2f}]"
  return text + (' *' if row['significant'] else '')


def markdown_table(header: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
  """A GitHub markdown table (cells converted with str)."""
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in body]
  return '\n'.join(lines)


def curve_band(curves: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(mean, low, high) over seeds of equal-length curves (N_seeds, E) -> each (E,).

  Curves of different lengths are cut to the shortest.
  """
  n = min(len(c) for c in curves)
  a = np.asarray([c[:n] for c in curves], dtype=np.float64)
  return a.mean(0), a.min(0), a.max(0)


# ----------------------------------------------------------------------------- figures


def new_canvas(width: float, height: float) -> mpl_figure.Figure:
  """An empty constrained-layout figure of width x height inches on an Agg canvas.

  Built without pyplot: no display and no global figure registry (as report.plot_curves).
  """
  fig = mpl_figure.Figure(figsize=(width, height), dpi=DPI, layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  return fig


def new_figure(nrows: int = 1, ncols: int = 1, width: float = 5.0, height: float = 3.6
               ) -> tuple[mpl_figure.Figure, np.ndarray]:
  """A `new_canvas` with (nrows, ncols) gridded axes of width x height inches each."""
  fig = new_canvas(width * ncols, height * nrows)
  axes = fig.subplots(nrows, ncols, squeeze=False)
  for ax in axes.ravel():
    ax.grid(True, alpha=0.3)
  return fig, axes


def save_figure(fig: mpl_figure.Figure, out: str, name: str) -> str:
  """Writes `fig` to out/name (PNG, DPI dots per inch, see `compact_png`); returns the path."""
  path = os.path.join(out, name)
  os.makedirs(out, exist_ok=True)
  fig.savefig(path, format='png', dpi=DPI)
  compact_png(path)
  return path


def compact_png(path: str) -> None:
  """Rewrites a PNG with a 256-colour palette, in place.

  Line plots use few colours, so this looks the same and is typically 3x smaller
  (figures are committed; many noisy curves made one 330 KB as RGBA).
  """
  with PIL.Image.open(path) as image:
    palette = image.convert('RGB').quantize(colors=256, method=PIL.Image.Quantize.MEDIANCUT)
  palette.save(path, format='png', optimize=True)


def integer_x(ax) -> None:
  """Integer ticks on the x axis (epochs)."""
  ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))


def colors(n: int) -> list[Any]:
  """n distinct colors from a sequential map (for ordered sweeps)."""
  cmap = matplotlib.colormaps['viridis']
  return [cmap(0.9 * i / max(n - 1, 1)) for i in range(n)]


# ----------------------------------------------------------------------------- provenance


def machine() -> str:
  """'2-core AMD EPYC x86_64, jax 0.x (cpu)': where the numbers were measured."""
  model = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      names = [l.split(':', 1)[1].strip() for l in f if l.startswith('model name')]
    if names:
      model = names[0]
  except OSError:
    pass
  return (f'{os.cpu_count()}-core {model} {platform.machine()}, jax {jax.__version__} '
          f'({jax.default_backend()})')


@dataclasses.dataclass
class Outputs:
  """Collects an experiment's results and report, then writes them into `out`.

  results.json holds `results` (NaN as null); report.md the markdown `lines`.
  """
  out: str
  title: str
  results: dict[str, Any] = dataclasses.field(default_factory=dict)
  lines: list[str] = dataclasses.field(default_factory=list)
  started: float = dataclasses.field(default_factory=time.perf_counter)
  started_cpu: float = dataclasses.field(default_factory=time.process_time)

  def add(self, *text: str) -> None:
    """Appends paragraphs (each followed by a blank line) to report.md."""
    for t in text:
      self.lines += [t, '']

  def figure(self, fig: mpl_figure.Figure, name: str, caption: str) -> str:
    """Saves a figure into `out`; returns its markdown (image and caption) for `add`."""
    save_figure(fig, self.out, name)
    self.results.setdefault('figures', []).append(name)
    return f'![{caption}]({name})\n\n*{caption}*'


  def write(self) -> dict[str, str]:
    """Writes results.json and report.md atomically; returns their paths."""
    seconds = time.perf_counter() - self.started
    cpu = time.process_time() - self.started_cpu
    load = os.getloadavg()[1]
    self.results.update(runtime_seconds=seconds, cpu_seconds=cpu, load_average_5min=load,
                        machine=machine())
    # The machine may be shared: the load average says how much the wall clock is inflated.
    head = [f'# {self.title}', '',
            f'Runtime {seconds / 60:.1f} min wall clock ({cpu / 60:.1f} min of CPU time) on '
            f'{self.results["machine"]}; 5-minute load average at the end {load:.1f}.', '']
    paths = {'json': os.path.join(self.out, 'results.json'),
             'report': os.path.join(self.out, 'report.md')}
    report.atomic_write_json(paths['json'], self.results)
    report.atomic_write_text(paths['report'], '\n'.join(head + self.lines).rstrip() + '\n')
    return paths
