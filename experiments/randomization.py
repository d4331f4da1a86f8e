r"""Experiment 13: Zhang et al. (2017), the rest -- random pixels and shuffled pixels.

  python -m experiments.randomization --out=/tmp/randomization [--mnist_dir=DIR] \
      [--seeds=3] [--smoke]

Zhang, Bengio, Hardt, Recht and Vinyals ("Understanding deep learning requires
rethinking generalization", ICLR 2017) fit networks to randomized data: random labels,
random pixels, shuffled pixels. Their claims: such data are fit to (near) 100% training
accuracy, only slower than the true data, and explicit regularizers (weight decay,
dropout) do not prevent it. experiments/memorization.py measured random labels; this
script puts the other randomizations next to a random-labels arm trained here at the
same settings, so that every arm is measured in one run:

  true labels      the MNIST subset as it is.
  random labels    every training label redrawn uniformly from the 10 classes (regjax's
                   `data.label_noise = 1.0`: about 9 in 10 change class).
  shuffled pixels  one fixed random permutation of the 784 pixel positions, applied to
                   every training and test image (true labels).
  random pixels    every training and test image replaced by Gaussian noise with the
                   per-pixel mean and standard deviation of the training images (float
                   inputs; true labels, which the inputs no longer carry).

Each arm trains without regularization, with an L2 penalty and with dropout, at fixed
strengths (the question is how fast the data are memorized, not which strength
generalizes best; memorization.py uses the same two strengths), for a fixed epoch budget
without early stopping, on a training subset, without a validation split (nothing is
chosen). After every epoch the network is evaluated in inference mode (dropout off) on
its whole training set; "epochs to fit" is the first epoch at which that accuracy
reaches 99%, and the time-to-fit ratio of an arm is its epochs to fit over the true
labels' with the same regularizer and seed.

Every run is regjax's one training program (`train.RunGroup`) with the training set as
an extra per-epoch evaluation set. The modified inputs are new `Dataset`s built with
`dataclasses.replace` (the pool and test arrays replaced); the test set is touched once
per run, at its end.

Writes results.json, report.md, randomization_fit.png and randomization_ratios.png.
"""

import dataclasses
import math
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np

from experiments import common
from regjax import train
from regjax.data import Dataset, load_source, split
from regjax.errors import ConfigError
from regjax.program import EvalSet

FIT_FIGURE = 'randomization_fit.png'
RATIO_FIGURE = 'randomization_ratios.png'
FIT_THRESHOLD = 0.99  # Inference-mode training accuracy that counts as "fitted".
PIXEL_SEED = 1234     # The permutation of shuffled pixels, and the noise of random pixels.
ARMS = ('true labels', 'random labels', 'shuffled pixels', 'random pixels')


@dataclasses.dataclass(frozen=True)
class Settings:
  """Sizes. regularizers: (name, config overrides)."""
  dataset: str
  train_size: int
  widths: tuple[int, ...]
  epochs: int
  batch_size: int
  learning_rate: float
  regularizers: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]


def make_settings(smoke: bool) -> Settings:
  """The full MNIST run, or a seconds-long one on digits for tests."""
  if smoke:
    return Settings(dataset='digits', train_size=200, widths=(32,), epochs=8, batch_size=32,
                    learning_rate=1e-2,
                    regularizers=(('none', ()), ('dropout 0.5', (('model.dropout_rate', 0.5),))))
  return Settings(dataset='mnist', train_size=2000, widths=(512,), epochs=80, batch_size=32,
                  learning_rate=1e-3,
                  regularizers=(('none', ()), ('L2 1e-3', (('penalty.l2', 1e-3),)),
                                ('dropout 0.5', (('model.dropout_rate', 0.5),))))


def make_config(s: Settings, mnist_dir: str, overrides: Sequence[tuple[str, Any]]
                ) -> ml_collections.ConfigDict:
  """MLP, Adam, fixed epochs, no early stopping, no validation split, plus overrides."""
  c = common.base_config(s.dataset == 'digits', mnist_dir)
  c = common.override(c, data__train_size=s.train_size, data__validation_fraction=0.0,
                      model__widths=s.widths, optimizer__name='adam',
                      optimizer__learning_rate=s.learning_rate, train__epochs=s.epochs,
                      train__batch_size=s.batch_size, early_stopping__enabled=False)
  for dotted, value in overrides:
    section, key = dotted.split('.')
    c[section][key] = value
  return c


# ----------------------------------------------------------------------------- the data


def _read_only(a: np.ndarray) -> np.ndarray:
  a.setflags(write=False)
  return a


def shuffle_pixels(data: Dataset, seed: int = PIXEL_SEED) -> tuple[Dataset, np.ndarray]:
  """`data` with one fixed permutation of the pixel positions applied to every pool and
  test image (stored dtype kept). Returns (dataset, permutation of the flat positions)."""
  shape = data.pool.shape[1:]
  perm = np.random.default_rng(seed).permutation(int(np.prod(shape)))

  def apply(x: np.ndarray) -> np.ndarray:
    return _read_only(np.ascontiguousarray(x.reshape(len(x), -1)[:, perm]).reshape(x.shape))

  return dataclasses.replace(data, pool=apply(data.pool), test=apply(data.test)), perm


def random_pixels(data: Dataset, seed: int = PIXEL_SEED) -> Dataset:
  """A dataset whose training and test images are Gaussian noise, float32.

  Each pixel position is drawn from a normal distribution with that position's mean and
  standard deviation over the (decoded) training images of `data`; the labels stay. The
  pool holds only the training rows (train_idx becomes 0..n-1) and there is no
  validation split: a noise image has no "held-out" meaning.
  """
  x = data.x_train.astype(np.float64)
  mean, std = x.mean(0), x.std(0)
  rng = np.random.default_rng(seed)
  noise = lambda n: _read_only((mean + std * rng.standard_normal((n,) + mean.shape))
                               .astype(np.float32))
  n = data.num_train
  return dataclasses.replace(
      data, pool=noise(n), pool_labels=_read_only(np.array(data.y_train_clean)),
      train_idx=_read_only(np.arange(n, dtype=np.int32)),
      val_idx=_read_only(np.zeros(0, np.int32)), test=noise(len(data.y_test)),
      decode_table=None)


def arm_datasets(config: ml_collections.ConfigDict) -> dict[str, Dataset]:
  """The four arms' datasets from one loaded source (same training rows everywhere)."""
  source = load_source(config.data)
  clean = split(source, config.data)
  noisy_cfg = ml_collections.ConfigDict(config.data.to_dict())
  noisy_cfg.label_noise = 1.0
  random_labels = split(source, noisy_cfg)
  if not np.array_equal(random_labels.train_idx, clean.train_idx):
    raise AssertionError('label noise changed the training rows')
  return {'true labels': clean, 'random labels': random_labels,
          'shuffled pixels': shuffle_pixels(clean)[0], 'random pixels': random_pixels(clean)}


# ----------------------------------------------------------------------------- training


def epochs_to_fit(curve: Sequence[float], threshold: float = FIT_THRESHOLD) -> int | None:
  """1-based epochs until the accuracy curve first reaches threshold; None if never."""
  for epoch, acc in enumerate(curve):
    if acc is not None and acc >= threshold:
      return epoch + 1
  return None


def train_arm(config: ml_collections.ConfigDict, data: Dataset, seed: int
              ) -> dict[str, Any]:
  """One run: per-epoch inference-mode training accuracy, final test accuracy."""
  sets = [EvalSet('trainset', 'pool', data.train_idx, data.y_train)]
  ((record, history, _),) = train.RunGroup([train.Run(config, seed, data)],
                                           eval_sets=sets).fit()
  curve = [row['trainset_accuracy'] for row in history]
  return {'seed': seed, 'fit_curve': curve,
          'train_mode_curve': [row['train_accuracy'] for row in history],
          'train_loss_curve': [row['train_loss'] for row in history],
          'epochs_to_fit': epochs_to_fit(curve), 'final_train_accuracy': curve[-1],
          'test_accuracy': record['test_accuracy'], 'diverged': record['diverged'],
          'seconds_per_epoch': record['seconds_per_epoch']}


def ratio(arm: dict[str, Any], base: dict[str, Any], epochs: int) -> dict[str, Any]:
  """Time-to-fit ratio arm / base; a run that never fits counts as epochs + 1 (so the
  ratio is then a lower bound, 'censored')."""
  a = arm['epochs_to_fit'] or epochs + 1
  b = base['epochs_to_fit'] or epochs + 1
  return {'ratio': a / b, 'censored': arm['epochs_to_fit'] is None
          or base['epochs_to_fit'] is None}


def run(out_dir: str, mnist_dir: str = '', smoke: bool = False, seeds: int = 3,
        log: Callable[[str], None] = common.log) -> dict[str, Any]:
  """Trains every (arm, regularizer, seed); writes results.json, report.md, figures."""
  if seeds < 1:
    raise ConfigError('seeds', seeds, 'must be >= 1')
  s = make_settings(smoke)
  out = common.Outputs(out_dir, 'Experiment 13: random pixels, shuffled pixels, random '
                       'labels (Zhang et al. 2017)')
  datasets = arm_datasets(make_config(s, mnist_dir, ()))
  runs = []
  for reg, overrides in s.regularizers:
    config = make_config(s, mnist_dir, overrides)
    for arm in ARMS:
      for seed in range(seeds):
        r = train_arm(config, datasets[arm], seed)
        r.update(arm=arm, regularizer=reg)
        runs.append(r)
        log(f'{reg:12s} {arm:16s} seed {seed}: fit at {r["epochs_to_fit"]}, final train '
            f'{100 * r["final_train_accuracy"]:.2f}%, test {100 * r["test_accuracy"]:.2f}%, '
            f'{r["seconds_per_epoch"]:.2f} s/epoch')
  get = lambda arm, reg, seed: next(r for r in runs if (r['arm'], r['regularizer'],
                                                        r['seed']) == (arm, reg, seed))
  for r in runs:
    r.update(ratio(r, get('true labels', r['regularizer'], r['seed']), s.epochs))
    r.update({f'{k}_vs_none': v for k, v in
              ratio(r, get(r['arm'], 'none', r['seed']), s.epochs).items()})
  regs = [name for name, _ in s.regularizers]
  slower = {reg: common.paired_rows([
      (f'{arm} ({reg}) fit slower than true labels',
       [math.log(get(arm, reg, k)['ratio']) for k in range(seeds)])
      for arm in ARMS[1:]]) for reg in regs}
  pixels_vs_labels = common.paired_rows([
      (f'random pixels ({reg}) fit faster than random labels',
       [math.log(get('random labels', reg, k)['epochs_to_fit'] or s.epochs + 1)
        - math.log(get('random pixels', reg, k)['epochs_to_fit'] or s.epochs + 1)
        for k in range(seeds)]) for reg in regs])
  write_outputs(out, s, seeds, datasets, runs, regs, get, slower, pixels_vs_labels)
  out.write()
  return out.results


# ----------------------------------------------------------------------------- outputs


def _fit_text(values: Sequence[int | None], epochs: int) -> str:
  ok = [v for v in values if v is not None]
  head = f'{len(ok)}/{len(values)}'
  if not ok:
    return f'not within {epochs} ({head})'
  return f'{common.pm(ok, scale=1.0, digits=1)} ({head})'


def _verdict(row: dict[str, Any]) -> str:
  """'holds' / 'does not hold' when Holm-significant, else 'not resolved (...)'."""
  if row['significant']:
    return 'holds' if row['mean'] > 0 else 'does not hold'
  values = row['diffs']
  if all(v > 0 for v in values):
    note = 'every seed in the claimed direction'
  elif all(v < 0 for v in values):
    note = 'every seed against it'
  elif all(v == 0 for v in values):
    note = 'no difference in any seed'
  else:
    note = 'the seeds disagree'
  return f"not resolved (p = {row['p_value']:.2g}, Holm {row['p_adjusted']:.2g}; {note})"


def write_outputs(out: common.Outputs, s: Settings, seeds: int, datasets, runs, regs, get,
                  slower, pixels_vs_labels) -> None:
  """Figures, report.md and results.json content."""
  data = datasets['true labels']
  # Figure 1: fit curves, one panel per regularizer.
  fig, axes = common.new_figure(1, len(regs), width=4.2, height=3.4)
  for ax, reg in zip(axes[0], regs):
    for i, arm in enumerate(ARMS):
      mean, low, high = common.curve_band([get(arm, reg, k)['fit_curve'] for k in range(seeds)])
      ep = np.arange(1, len(mean) + 1)
      ax.plot(ep, 100 * mean, color=f'C{i}', label=arm)
      ax.fill_between(ep, 100 * low, 100 * high, color=f'C{i}', alpha=0.15, lw=0)
    ax.axhline(100 * FIT_THRESHOLD, color='gray', ls=':', lw=0.8)
    ax.set(xlabel='epoch', ylabel='training accuracy % (inference mode)', title=reg,
           ylim=(0, 101))
    ax.legend(fontsize=7, frameon=False, loc='lower right')
  fig.suptitle(f'{data.name}, {data.num_train:,} training images, MLP '
               f'{"x".join(map(str, s.widths))}, Adam {s.learning_rate:g}, batch '
               f'{s.batch_size}: accuracy on the training set as given; mean of {seeds} '
               'seeds, band = min-max', fontsize=9)
  fig_fit = out.figure(fig, FIT_FIGURE, 'Inference-mode training accuracy per epoch for '
                       'each randomization, without and with each regularizer.')

  # Figure 2: epochs to fit and ratios.
  fig, axes = common.new_figure(1, 2, width=5.0, height=3.4)
  width = 0.8 / len(regs)
  for j, reg in enumerate(regs):
    for i, arm in enumerate(ARMS):
      x = i + (j - (len(regs) - 1) / 2) * width
      fits = [get(arm, reg, k)['epochs_to_fit'] for k in range(seeds)]
      ok = [f for f in fits if f is not None]
      axes[0, 0].scatter([x] * len(ok), ok, color=f'C{j}', s=14, zorder=3,
                         label=reg if i == 0 else None)
      miss = len(fits) - len(ok)
      if miss:
        axes[0, 0].scatter([x] * miss, [s.epochs + 2] * miss, color=f'C{j}', marker='x',
                           s=20)
      rs = [get(arm, reg, k)['ratio'] for k in range(seeds)]
      axes[0, 1].scatter([x] * len(rs), rs, color=f'C{j}', s=14, zorder=3,
                         label=reg if i == 0 else None)
  for ax in axes[0]:
    ax.set_xticks(range(len(ARMS)), [a.replace(' ', '\n') for a in ARMS], fontsize=8)
    ax.legend(fontsize=7, frameon=False)
  axes[0, 0].set_ylabel(f'epochs to {100 * FIT_THRESHOLD:g}% training accuracy')
  axes[0, 0].set_title(f'x: not within {s.epochs} epochs', fontsize=9)
  axes[0, 1].axhline(1, color='black', lw=0.8)
  axes[0, 1].set_yscale('log')
  axes[0, 1].set_ylabel('time to fit / true labels (same seed, regularizer)')
  fig.suptitle(f'Time to fit, per seed ({seeds} seeds)', fontsize=9)
  fig_ratio = out.figure(fig, RATIO_FIGURE, 'Epochs to fit each randomization, and the '
                         'ratio to the true labels with the same regularizer and seed.')

  body = []
  for reg in regs:
    for arm in ARMS:
      rs = [get(arm, reg, k) for k in range(seeds)]
      ratios = [r['ratio'] for r in rs]
      cens = any(r['censored'] for r in rs)
      body.append([arm, reg, _fit_text([r['epochs_to_fit'] for r in rs], s.epochs),
                   ('1' if arm == 'true labels' else
                    f'{np.mean(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]'
                    + (' (≥: some not fitted)' if cens else '')),
                   common.pm([r['final_train_accuracy'] for r in rs]),
                   common.pm([r['test_accuracy'] for r in rs])])
  out.add('## Setup',
          f'{data.name}: the first {data.num_train:,} images of the training split (no '
          f'validation split: nothing is chosen), the whole test set ({len(data.y_test):,}; '
          f'randomized like the training images). MLP {"x".join(map(str, s.widths))} ReLU, '
          f'Adam {s.learning_rate:g}, batch {s.batch_size}, {s.epochs} epochs, no early '
          f'stopping, {seeds} seeds (the same seeds in every arm: the same initialization, '
          'batch order and dropout masks). Regularizers at fixed strengths: '
          + '; '.join(f'{name}: {", ".join(f"{k}={v}" for k, v in o) or "-"}'
                      for name, o in s.regularizers) + '. "Fitted" = inference-mode '
          f'training accuracy (on the labels as given) >= {100 * FIT_THRESHOLD:g}%. '
          f'Random labels changed the class of '
          f'{int(np.sum(datasets["random labels"].y_train != data.y_train))} of the '
          f'{data.num_train:,} training labels.')
  out.add('## Time to fit',
          'Epochs to fit: mean ± std over the seeds that fit (fitted seeds / seeds); '
          'ratio: epochs to fit over the true labels\' with the same regularizer and seed, '
          'mean [min, max] over seeds (a run that never fits counts as '
          f'{s.epochs + 1} epochs, so its ratio is a lower bound). Final = after epoch '
          f'{s.epochs}.',
          common.markdown_table(['arm', 'regularizer', 'epochs to fit', 'ratio to true labels',
                                 'final train acc %', 'test acc %'], body), fig_fit, fig_ratio)
  claims = []
  for reg in regs:
    for arm in ARMS[1:]:
      rs = [get(arm, reg, k) for k in range(seeds)]
      k = sum(r['epochs_to_fit'] is not None for r in rs)
      claims.append([f'{arm} are fit ({reg})', f'{k}/{seeds} seeds within {s.epochs} epochs',
                     'holds' if k == seeds else 'does not hold' if k == 0 else
                     'not resolved (some seeds)'])
  for reg in regs:
    for row in slower[reg]:
      claims.append([row['name'], 'log ratio ' + ', '.join(f'{v:+.2f}' for v in row['diffs']),
                     _verdict(row)])
  for row in pixels_vs_labels:
    claims.append([row['name'], 'log(labels / pixels) ' + ', '.join(
        f'{v:+.2f}' for v in row['diffs']), _verdict(row)])
  out.add('## Claims',
          'Observations ("are fit") count seeds; comparisons use the exact sign-flip test '
          f'of the per-seed log ratios, Holm over the three arms of each regularizer (and '
          f'over the regularizers for pixels vs labels); {seeds} seeds cannot give p < '
          f'{2 / 2 ** seeds:g}.',
          common.markdown_table(['claim', 'measured', 'verdict'], claims))
  out.results.update({
      'settings': dataclasses.asdict(s) | {'seeds': seeds, 'fit_threshold': FIT_THRESHOLD,
                                           'pixel_seed': PIXEL_SEED},
      'runs': runs, 'slower_than_true': slower, 'pixels_vs_labels': pixels_vs_labels,
      'changed_labels': int(np.sum(datasets['random labels'].y_train != data.y_train)),
  })


if __name__ == '__main__':
  common.script_main(run, default_seeds=3, seeds_help='Seeds per setting.', min_seeds=1)
