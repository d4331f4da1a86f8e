r"""A comparison's finished runs, back from its workdir: load one, or re-evaluate them all.

  python -m regjax.evaluate --workdir=DIR [--data=NAME] [--data_dir=DIR]

re-evaluates the weights every finished run reports (its best epoch's, under early
stopping) on a test split and prints, per variant and seed, the test accuracy in % with
2 decimals. Without --data the test split is each run's own, and the numbers are those
of results.json: the same inference-mode program (regjax/trainer.py `Trainer.eval_sums`,
decoding and standardizing as the run did), in the same chunks. With --data=NAME
(digits | mnist | fashion_mnist | tfds:NAME | npz:PATH, as `data.name`) another dataset's
test split is evaluated instead; its examples must have the shape the model was trained
on (e.g. digits' 8x8x1 differ from MNIST's 28x28x1: a one-line error).

In Python:

  model, variables, config = regjax.load_run('runs/l2-...', 'l2_1e-2', seed=0)
  logits = model.apply(variables, x, train=False)   # x: (B, ...) decoded float32 inputs

`variables` is {'params', 'batch_stats'} (numpy arrays) and `config` the run's full
config (regjax/workdir.py `run_config`). Inputs are decoded as the run's data decodes
them: `regjax.data.load_dataset(config.data).x_test`, standardized too when
`config.data.standardize`.

Bad input (an unknown workdir, variant or seed, a dataset that does not fit) is one line
`regjax.evaluate: error: ...` on stderr with exit status 2.
"""

import json
import os
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from regjax import data as data_lib
from regjax import report
from regjax import trainer as trainer_lib
from regjax import workdir as workdir_lib
from regjax.errors import ConfigError
from regjax.models import make_model

EXIT_BAD_INPUT = 2


def output_classes(params: dict[str, Any]) -> int:
  """The number of logits of a model's weights: the width of its last Dense kernel.

  Taken from the weights rather than from the data, so a run loads even where its
  dataset is unavailable (the models' output layer is their highest-numbered Dense).
  """
  dense = [k for k in params if k.startswith('Dense_') and k[len('Dense_'):].isdigit()]
  if not dense:
    raise ConfigError('variables', sorted(params), 'no Dense_<n> layer: not the weights '
                      'of a regjax model')
  last = max(dense, key=lambda k: int(k[len('Dense_'):]))
  return int(np.shape(params[last]['kernel'])[-1])


def _find_record(workdir: str, variant: str, seed: int) -> dict[str, Any]:
  """The finished record of (variant, seed), or a ConfigError naming what exists."""
  config = workdir_lib.read_config(workdir)
  records = workdir_lib.finished_records(workdir)
  for record in records:
    if record['variant'] == variant and record['seed'] == seed:
      return record
  finished = sorted({r['variant'] for r in records})
  known = [n.strip() for n in str(config.get('order', '')).split(',') if n.strip()]
  if variant not in finished:
    allowed = ', '.join(finished) if finished else 'none has finished yet'
    what = 'no such variant' if variant not in known else 'no finished run'
    raise ConfigError('variant', variant, f'{what} in {workdir}; finished variants: '
                      f'{allowed}')
  seeds = ', '.join(str(r['seed']) for r in records if r['variant'] == variant)
  raise ConfigError('seed', seed, f'no finished run of {variant} with this seed in '
                    f'{workdir}; its finished seeds: {seeds}')


def load_record(workdir: str, record: dict[str, Any]
                ) -> tuple[nn.Module, dict[str, Any], ml_collections.ConfigDict]:
  """(model, variables, config) of the run a finished record reports (`load_run`)."""
  config = workdir_lib.run_config(workdir_lib.read_config(workdir), record)
  folder = os.path.join(workdir, record.get('run_dir') or os.path.relpath(
      workdir_lib.run_dir(workdir, record['variant'], record['seed']), workdir))
  try:
    variables = workdir_lib.load_variables(folder)
  except (OSError, ValueError) as e:
    raise ConfigError('workdir', workdir, f"the weights of {record['variant']} seed "
                      f"{record['seed']} ({os.path.join(folder, workdir_lib.VARIABLES_FILE)}) "
                      f'cannot be read ({type(e).__name__})') from None
  variables = {'params': variables.get('params', {}),
               'batch_stats': variables.get('batch_stats') or {}}
  model = make_model(config.model, output_classes(variables['params']))
  return model, variables, config


def load_run(workdir: str, variant: str, seed: int
             ) -> tuple[nn.Module, dict[str, Any], ml_collections.ConfigDict]:
  """The finished run (variant, seed) of a comparison's workdir.

  Returns:
    model: the Linen module (`regjax.models.make_model(config.model, num_classes)`,
      num_classes read off the weights' output layer).
    variables: {'params', 'batch_stats'} as numpy arrays: the weights the run reports
      (and its record's test accuracy is of), from the record's 'run_dir'.
    config: the run's full config: `variants.variant_config` plus the record's 'chosen'
      fields (regjax/workdir.py `run_config`).
  Raises:
    ConfigError: an unknown workdir, variant or seed (the message names those that
      exist), or unreadable weights.
  """
  return load_record(workdir, _find_record(workdir, variant, seed))


# ------------------------------------------------------------------------- evaluation


_EVAL_CHUNKS: dict[str, Any] = {}


def _eval_chunk(model: nn.Module, key: str):
  """`Trainer.eval_sums` of `model`, jitted once per model (runs of a variant share it)."""
  if key not in _EVAL_CHUNKS:
    # The evaluation reads only the model: no optimizer is built.
    trainer = trainer_lib.Trainer(model=model, tx=optax.identity())
    _EVAL_CHUNKS[key] = jax.jit(trainer.eval_sums)
  return _EVAL_CHUNKS[key]


def evaluate(model: nn.Module, variables: dict[str, Any], stored: np.ndarray,
             labels: np.ndarray, table: np.ndarray | None = None,
             shift: np.ndarray | None = None, scale: np.ndarray | None = None,
             eval_batch_size: int = 1024) -> dict[str, float]:
  """Inference-mode {'loss' (mean cross-entropy, nats), 'accuracy' (fraction)}.

  stored: (N, ...) inputs as a Dataset stores them, decoded with table / shift / scale
  as regjax/trainer.py `decode` does; labels: (N,) int. Chunks of eval_batch_size (the
  last padded and masked) with float64 totals: regjax/train.py's final evaluation,
  so a run's weights give its record's numbers.
  """
  chunk = _eval_chunk(model, repr(model))
  n = len(labels)
  size = min(eval_batch_size, max(n, 1))
  totals = np.zeros(2, np.float64)
  for start in range(0, n, size):
    xb = stored[start:start + size]
    yb = np.asarray(labels[start:start + size], np.int32)
    pad = size - len(yb)
    valid = np.arange(size) < len(yb)
    xb = np.pad(xb, [(0, pad)] + [(0, 0)] * (xb.ndim - 1))
    yb = np.pad(yb, (0, pad))
    totals += np.asarray(chunk(variables['params'], variables['batch_stats'], xb, yb,
                               valid, table, shift, scale), np.float64)
  return {'loss': float(totals[0] / n), 'accuracy': float(totals[1] / n)}


def _check_fits(model: nn.Module, variables: dict[str, Any], example_shape: tuple,
                what: str, whose: str) -> None:
  """Raises ConfigError unless inputs of `example_shape` fit the weights' shapes."""
  sample = jax.ShapeDtypeStruct((1, *example_shape), jnp.float32)
  try:
    wanted = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                            sample)['params']
    fits = jax.tree.map(lambda a, b: tuple(a.shape) == tuple(np.shape(b)), wanted,
                        variables['params'])
    ok = all(jax.tree.leaves(fits))
  except (ValueError, TypeError):  # Another tree structure or a shape error in init.
    ok = False
  if not ok:
    first = next(iter(variables['params'].values()))
    kernel = np.shape(first.get('kernel')) if isinstance(first, dict) else '?'
    raise ConfigError('--data', what, f'its examples are {tuple(example_shape)}, which '
                      f'{whose} does not take (its first kernel is {kernel}); pass data '
                      'with the shape the model was trained on')


def _data_config(config: ml_collections.ConfigDict, name: str | None,
                 data_dir: str | None) -> ml_collections.ConfigDict:
  c = config.data.copy_and_resolve_references()
  if data_dir:
    c.dir = data_dir
  if name:
    # Only the test split is read: keep every example of the pool, change no label.
    c.update(name=name, train_size=0, validation_fraction=0.0, label_noise=0.0,
             standardize=False)
  return c


def evaluate_workdir(workdir: str, data: str | None = None, data_dir: str | None = None,
                     log=lambda line: None) -> list[dict[str, Any]]:
  """Re-evaluates every finished run of `workdir` on a test split.

  Args:
    workdir: a comparison's workdir.
    data: None: each run's own test split (and standardization). A `data.name`: that
      dataset's test split, decoded by its own storage and standardized, when the run
      standardized, with the run's own training statistics.
    data_dir: `data.dir` for mnist / fashion_mnist (of the run's data, or of `data`).
    log: receives a line per dataset loaded.
  Returns:
    One row per run, in table order: {'variant', 'seed', 'run_dir', 'test_accuracy',
    'test_loss', 'recorded_accuracy' (the record's), 'examples'}; accuracies are
    fractions, losses mean cross-entropy in nats.
  Raises:
    ConfigError: an unknown workdir, no finished run, or data that does not fit.
  """
  config = workdir_lib.read_config(workdir)
  records = workdir_lib.finished_records(workdir)
  if not records:
    raise ConfigError('workdir', workdir, 'has no finished run yet')
  datasets: dict[str, data_lib.Dataset] = {}

  def dataset(c: ml_collections.ConfigDict) -> data_lib.Dataset:
    key = json.dumps(c.to_dict(), sort_keys=True, default=str)
    if key not in datasets:
      log(f'loading {c.name}')
      datasets[key] = data_lib.load_dataset(c)
    return datasets[key]

  rows = []
  for record in records:
    model, variables, run_config = load_record(workdir, record)
    whose = f"the model of {record['variant']} seed {record['seed']}"
    own = None
    if data is None or run_config.data.get('standardize', False):
      own = dataset(_data_config(run_config, None, data_dir))
    ds = own if data is None else dataset(_data_config(run_config, data, data_dir))
    classes = output_classes(variables['params'])
    _check_fits(model, variables, ds.test.shape[1:], data or ds.name, whose)
    if ds.y_test.max() >= classes:
      raise ConfigError('--data', data or ds.name, f'has test labels up to '
                        f'{ds.y_test.max()}; {whose} has {classes} classes')
    shift, scale = (None, None) if own is None else (own.feature_shift, own.feature_scale)
    result = evaluate(model, variables, ds.test, ds.y_test, ds.decode_table, shift, scale,
                      run_config.train.eval_batch_size)
    rows.append({'variant': record['variant'], 'seed': record['seed'],
                 'run_dir': record.get('run_dir'), 'test_accuracy': result['accuracy'],
                 'test_loss': result['loss'],
                 'recorded_accuracy': record.get('test_accuracy'),
                 'examples': len(ds.y_test)})
  return rows


def _percent(value: Any) -> str:
  return 'nan' if value is None or not np.isfinite(value) else f'{100 * value:.2f}'


def format_rows(rows: list[dict[str, Any]], own: bool) -> str:
  """The table `python -m regjax.evaluate` prints: one line per run, its accuracies in %
  and its weights file (flax msgpack, regjax/workdir.py) relative to the workdir."""
  width = max([len('variant')] + [len(r['variant']) for r in rows])
  head = f"{'variant':<{width}}  {'seed':>4}  {'test_acc %':>10}"
  if own:
    head += f"  {'recorded %':>10}"
  lines = [head + '  weights (in the workdir)']
  for r in rows:
    line = f"{r['variant']:<{width}}  {r['seed']:>4}  {_percent(r['test_accuracy']):>10}"
    if own:
      line += f"  {_percent(r['recorded_accuracy']):>10}"
    weights = os.path.join(r['run_dir'] or '?', workdir_lib.VARIABLES_FILE)
    lines.append(f'{line}  {weights}')
  return '\n'.join(lines)


# --------------------------------------------------------------------------- command


def _fail(message: str) -> None:
  print(f'regjax.evaluate: error: {" ".join(message.split())}', file=sys.stderr)
  sys.exit(EXIT_BAD_INPUT)


def _define_flags():
  # Defined only when run as a command, so that importing this module (regjax.load_run)
  # never clashes with another command's flags of the same name (--workdir).
  from absl import flags  # pylint: disable=g-import-not-at-top
  return {
      'workdir': flags.DEFINE_string('workdir', None, 'A comparison\'s workdir '
                                     '(python -m regjax.main --workdir=...).'),
      'data': flags.DEFINE_string('data', None, 'Evaluate on this dataset\'s test split '
                                  'instead of each run\'s own: digits | mnist | '
                                  'fashion_mnist | tfds:NAME | npz:PATH.'),
      'data_dir': flags.DEFINE_string('data_dir', None, 'data.dir for mnist / '
                                      'fashion_mnist (the IDX files\' folder).'),
  }


def _parse_flags(argv: list[str]) -> list[str]:
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)


def main(argv: list[str], values: dict[str, Any]) -> None:
  """Prints the re-evaluated test accuracy of every finished run; bad input exits 2."""
  if len(argv) > 1:
    _fail(f'unexpected arguments {argv[1:]}; see --help')
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)  # JAX's backend probing is not news.
  workdir = values['workdir'].value
  if not workdir:
    _fail('--workdir is required: the folder of a comparison (python -m regjax.main '
          '--workdir=DIR)')
  name = values['data'].value
  if name is not None and not name.strip():
    _fail("--data='': pass a dataset name (digits | mnist | fashion_mnist | tfds:NAME | "
          'npz:PATH), or leave --data out for each run\'s own')
  try:
    # The precision the runs were computed with, so the numbers are theirs (on a GPU
    # JAX's default matmul precision is TF32, not float32).
    with open(os.path.join(workdir, report.RESULTS_JSON), encoding='utf-8') as f:
      precision = json.load(f).get('environment', {}).get('matmul_precision')
    if precision:
      jax.config.update('jax_default_matmul_precision', precision)
  except (OSError, ValueError, AttributeError):
    pass
  try:
    rows = evaluate_workdir(workdir, name, values['data_dir'].value,
                            log=lambda line: print(f'regjax.evaluate: {line}', file=sys.stderr))
  except ConfigError as e:
    _fail(str(e))
  where = (f"the test split of {name}" if name else "each run's own test split")
  sizes = sorted({r['examples'] for r in rows})
  print(f'{len(rows)} finished runs of {workdir}, re-evaluated on {where} '
        f"({' / '.join(map(str, sizes))} examples):")
  print(format_rows(rows, own=name is None))
  if name is None:
    differ = [r for r in rows
              if _percent(r['test_accuracy']) != _percent(r['recorded_accuracy'])]
    if differ:
      print(f'regjax.evaluate: note: {len(differ)} runs differ from results.json (another '
            'machine or precision than the runs had?)', file=sys.stderr)


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  _VALUES = _define_flags()
  app.run(lambda argv: main(argv, _VALUES), flags_parser=_parse_flags)
