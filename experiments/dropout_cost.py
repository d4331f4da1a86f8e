r"""What dropout's masks cost: the dropout-p training epoch over the no-dropout epoch.

  python -m experiments.dropout_cost --mnist_dir=../shared/data/mnist

The workload is configs/notebook.py's model on the default split (54,000 MNIST training
images): Flatten -> Dense 128 relu -> Dropout -> Dense 10, Adam 1e-3, batch 32, one jitted
`Trainer.train_epoch` (one `lax.scan` over 1,687 steps), no evaluation, no checkpoints.
The two epochs are timed interleaved (dropout, none, dropout, none, ...) in one process,
and the ratio is the median of the per-repeat ratios: on a shared machine the absolute
seconds drift with the load, their ratio much less. The speed goal (ratio <= 1.15) lives
here and in experiments/benchmark.py, not in a test.
"""

import os
import statistics
import time
from typing import Any

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

from experiments import common
from regjax import data as data_lib
from regjax import models
from regjax import schema
from regjax import trainer as trainer_lib
from regjax.data import Dataset


def notebook_config(rate: float, batch_size: int = 32, width: int = 128):
  """configs/notebook.py's model and optimizer with dropout `rate` (data set by caller)."""
  c = schema.default_config()
  c.model.widths = (width,)
  c.model.dropout_rate = rate
  c.optimizer.name, c.optimizer.learning_rate = 'adam', 1e-3
  c.train.batch_size = batch_size
  c.early_stopping.enabled = False
  return c


def _compiled_epoch(config, data: Dataset, arrays):
  """(compiled epoch, its arguments): the training epoch of `config` (regjax/trainer.py)."""
  trainer = trainer_lib.make_trainer(config, data.num_classes, data.num_train,
                                     trainer_lib.active_penalties(config))
  init_key, shuffle_key, dropout_key = trainer_lib.run_keys(0)
  state = trainer.init(init_key, arrays[0][:1])
  args = (state, *arrays, trainer_lib.penalty_hparams(config), shuffle_key, dropout_key,
          jnp.int32(0))
  compiled = jax.jit(trainer.train_epoch).lower(*args).compile()
  jax.block_until_ready(compiled(*args))  # Warm-up: first-call allocations, caches.
  return compiled, args


def _seconds(compiled, args) -> tuple[float, float]:
  """(wall, CPU) seconds of one call. CPU time (all threads of this process) varies less
  with other processes' load; with one busy thread it is what an idle machine's wall
  clock would read."""
  t0, c0 = time.perf_counter(), time.process_time()
  jax.block_until_ready(compiled(*args))
  return time.perf_counter() - t0, time.process_time() - c0


def dropout_cost(data: Dataset, repeats: int = 7, batch_size: int = 32, width: int = 128,
                 rate: float = 0.5) -> dict[str, Any]:
  """Times one training epoch with dropout `rate` and without, interleaved `repeats` times.

  Args:
    data: the training set is `data.x_train` / `data.y_train` (the test set is unused).
    repeats: timed epochs of each kind (after one untimed warm-up epoch each).
    batch_size, width: the batch and the MLP's hidden width (the notebook: 32, 128).
    rate: the dropout rate compared with none.
  Returns:
    {'dropout_seconds', 'no_dropout_seconds' (medians, s per epoch), 'ratio' (median of
    the per-repeat ratios dropout / none), 'ratios' (each repeat's), 'cpu_ratio' (the
    same in process CPU seconds), 'rate', 'steps'
    (steps per epoch), 'mask_bits' (models.DROPOUT_BITS: where the masks' random bits
    come from), 'backend', 'load_average' (1/5/15-minute, at the end)}.
  """
  arrays = (jax.device_put(data.x_train), jax.device_put(data.y_train))
  programs = {name: _compiled_epoch(notebook_config(r, batch_size, width), data, arrays)
              for name, r in (('dropout', rate), ('none', 0.0))}
  wall, cpu = {'dropout': [], 'none': []}, {'dropout': [], 'none': []}
  for _ in range(repeats):
    for name in ('dropout', 'none'):
      w, c = _seconds(*programs[name])
      wall[name].append(w)
      cpu[name].append(c)
  ratios = [a / b for a, b in zip(wall['dropout'], wall['none'])]
  cpu_ratios = [a / b for a, b in zip(cpu['dropout'], cpu['none'])]
  return {'dropout_seconds': statistics.median(wall['dropout']),
          'no_dropout_seconds': statistics.median(wall['none']),
          'ratio': statistics.median(ratios), 'ratios': ratios,
          'cpu_ratio': statistics.median(cpu_ratios), 'rate': rate,
          'steps': len(data.x_train) // batch_size, 'mask_bits': models.DROPOUT_BITS,
          'backend': jax.default_backend(), 'load_average': list(os.getloadavg())}


def main(argv: list[str]) -> None:
  del argv
  f = flags.FLAGS
  c = schema.default_config()
  if not f.smoke:
    c.data.name, c.data.dir = 'mnist', f.mnist_dir
  result = common.run_or_fail(lambda: dropout_cost(
      data_lib.load_dataset(c.data), repeats=f.repeats, batch_size=f.batch_size,
      width=f.width, rate=f.rate))
  print(f"dropout {result['rate']} epoch / no-dropout epoch: {result['ratio']:.3f} "
        f"(median of {len(result['ratios'])}; each: "
        f"{', '.join(f'{r:.3f}' for r in result['ratios'])}); in CPU time "
        f"{result['cpu_ratio']:.3f}")
  print(f"  {result['dropout_seconds']:.3f} s vs {result['no_dropout_seconds']:.3f} s per "
        f"epoch of {result['steps']} steps on {result['backend']}; masks: "
        f"{result['mask_bits']}; load average {result['load_average']}")


if __name__ == '__main__':
  flags.DEFINE_string('mnist_dir', common.default_mnist_dir(),
                      'Folder with the four MNIST IDX files; empty = TFDS.')
  flags.DEFINE_bool('smoke', False, 'The embedded digits instead of MNIST (seconds).')
  flags.DEFINE_integer('repeats', 7, 'Timed epochs of each kind.', lower_bound=1)
  flags.DEFINE_integer('batch_size', 32, 'Training batch.', lower_bound=1)
  flags.DEFINE_integer('width', 128, 'Hidden width.', lower_bound=1)
  flags.DEFINE_float('rate', 0.5, 'Dropout rate compared with none.')
  app.run(main)
