r"""Speed benchmark: regjax vs Keras 3 (JAX backend), the classic notebook's own code and
PyTorch eager, the matmul roof, a vmapped sweep vs sequential runs, first compile, peak
memory, and what dropout and checkpoints add; all in one run.

  python -m experiments.benchmark --mnist_dir=../shared/data/mnist --out=/tmp/bench \
      --keras_python=../peers-venv/bin/python --torch_python=../peers-venv/bin/python
  python -m experiments.benchmark --smoke --out=/tmp/bench-smoke   # minutes, digits
  bash experiments/gpu_benchmark.sh MNIST_DIR OUT     # on a GPU machine, see that file

The peers' Python is any virtualenv outside the repository with keras 3 (and jax) and
torch, e.g. `python -m venv ../peers-venv && ../peers-venv/bin/pip install keras
jax torch` (a CPU wheel of torch will do).

What it measures (all on this machine, in this run):
  (a) The classic workload: MNIST, MLP 784-128-10 (ReLU), Dropout 0.5, Adam 1e-3, batch
      32, `--epochs` epochs, the test set evaluated after every epoch (the notebook's
      `validation_data=(x_test, y_test)`). Seconds per epoch, final test accuracy and
      peak resident memory (VmHWM) of four rows, each a fresh child process:
        regjax    a run as `python -m regjax.main` trains it: regjax/program.py's epoch
                  with the test set as an extra evaluation set, uint8 inputs decoded in
                  the program, checkpoints on at the default timing (`regjax_child`,
                  this interpreter); its memory broken down by stage;
        keras     Keras 3 on the JAX backend, the notebook's model fed float32;
        notebook  the classic notebook's own code: its `x / 255.0` (float64 inputs),
                  logits with a from_logits loss, fit's defaults (progress bar);
        torch     PyTorch eager.
      Keras and PyTorch run with `--keras_python` / `--torch_python` (default: this
      interpreter), so neither has to be installed beside regjax; where one cannot be
      imported, its row says so and is skipped.
      Seconds per epoch = the median over epochs 2.. (epoch 1 of Keras includes its
      XLA compilation; regjax compiles ahead of time, outside any epoch).
      Beside them, the batch-32 *matmul floor*: one epoch of only the MLP's training
      matmuls (`matmul_floor`) with XLA's kernels: a lower bound for any XLA program
      training this model at batch 32 here, hence the largest speedup over Keras /
      PyTorch that such a program could show.
      On a GPU, PyTorch runs on the GPU and peak device memory is reported too.
  (b) regjax's training throughput in GFLOP/s at batch 32, 256, 1024 (one epoch of
      `Trainer.train_epoch`, no evaluation) against the GFLOP/s of one large float32
      matmul (the roof: 2048^2 on a CPU, 8192^2 on an accelerator, at JAX's default
      precision, which is TF32 on recent NVIDIA GPUs), counting only the MLP's matmul
      FLOPs (`FLOP_FORMULA`).
  (c) A 16-member sweep (4 seeds x 4 L2 strengths) as one vmapped program
      (`train.RunGroup`: stopped members frozen, the running ones moved into smaller
      programs) vs the same 16 runs one after another (`train.fit`, which compiles each
      distinct program once per process), wall clock including compilation; and the
      member-epochs the group computed vs those its members needed.
  (d) First-compile seconds of the classic epoch program (trace + lower + compile, in
      the regjax row's fresh process).
  (e) Dropout's cost: the dropout-0.5 training epoch over the no-dropout epoch,
      interleaved (experiments/dropout_cost.py, 54,000 MNIST images).
  (f) Checkpoints' cost: whole comparisons, configs/notebook.py (MNIST) and
      configs/l2.py (digits), with checkpoints at the default timing over checkpoints
      off (`checkpoint_overhead`).
The issue's targets (set for a 2-core CPU) are printed beside the measured ratios, met
or not; on an accelerator they are shown for reference only.
Writes results.json and summary.md into --out. Tests run --smoke (digits, tiny).
"""

import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from regjax import checkpointing
from regjax import parallel
from regjax import schema
from regjax import train
from regjax import trainer as trainer_lib
from regjax import variants
from regjax.data import Dataset, load_dataset
from regjax.program import EvalSet

REPO_ROOT = Path(__file__).resolve().parents[1]


def _define_flags() -> None:
  """Defines the flags; only when run as a script, so importing this module (tests)
  leaves the process's absl flags alone."""
  flags.DEFINE_string('out', None, 'Output folder (created).')
  flags.DEFINE_string(
      'mnist_dir', None, 'Folder with the four MNIST IDX files (default: $REGJAX_MNIST_DIR, '
      'else ../shared/data/mnist beside the repository).')
  flags.DEFINE_bool('smoke', False, 'Seconds-long form on the embedded digits.')
  flags.DEFINE_integer('epochs', 5, 'Epochs of the classic workload.', lower_bound=2)
  flags.DEFINE_integer('seeds', 1, 'Seeds of the classic workload per framework.',
                       lower_bound=1)
  flags.DEFINE_integer('sweep_epochs', 2, 'Epochs of each sweep member.', lower_bound=1)
  flags.DEFINE_string('keras_python', sys.executable,
                      'Python that can import keras (and jax); empty = skip.')
  flags.DEFINE_string('torch_python', sys.executable,
                      'Python that can import torch; empty = skip.')
  flags.DEFINE_integer('roof_n', 0, 'Side of the square float32 matmul that measures the '
                       'roof; 0 = 2048 on a CPU, 8192 on an accelerator.', lower_bound=0)


HIDDEN = 128
# Matmul FLOPs of one training example of the MLP d-h-k (2 FLOPs per multiply-add):
# forward x@W1 and h@W2, backward dW1 = x^T g1, dW2 = h^T g2 and g_h = g2 W2^T (no
# gradient with respect to the input). Biases, ReLU, dropout, softmax, the optimizer
# update and the batch gather are not counted, so the GFLOP/s is a lower bound.
FLOP_FORMULA = '4*d*h + 6*h*k  (d inputs, h hidden, k classes; 409,088 for 784-128-10)'
TARGETS = {
    'keras_speedup_batch32': ('>=', 5.0),
    'torch_speedup_batch32': ('>=', 10.0),
    'accuracy_gap_pt': ('<=', 0.3),
    'roof_fraction_batch_ge_256': ('>=', 0.9),
    'sweep_speedup_16': ('>=', 1.5),
    'first_compile_seconds': ('<', 5.0),
    # The issue "dropout and checkpoints nearly free, memory at Keras' level".
    'dropout_epoch_ratio': ('<=', 1.15),
    'checkpoint_overhead': ('<=', 1.05),
    'peak_rss_vs_keras': ('<=', 1.2),
    'notebook_speedup_dropout': ('>=', 5.0),
    'ahead_of_peer': ('>=', 1.0),
}
# The rows of the classic workload: regjax, Keras 3 fed float32, the notebook's own code
# (Keras 3 fed its float64 `x / 255.0`), PyTorch eager.
PEERS = ('regjax', 'keras', 'notebook', 'torch')


def flops_per_example(d: int, h: int = HIDDEN, k: int = 10) -> int:
  """Matmul FLOPs of one training example (forward + backward) of the MLP d-h-k."""
  return 4 * d * h + 6 * h * k


def peak_rss_mib() -> float:
  """Peak resident memory of this process in MiB: VmHWM from /proc, else ru_maxrss.

  VmHWM belongs to the process image, so a child started by exec reports its own peak;
  ru_maxrss can carry over the parent's peak into a forked child on Linux.
  """
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) / 1024.0  # kB.
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB.


def _mnist_dir() -> str:
  if flags.FLAGS.mnist_dir:
    return flags.FLAGS.mnist_dir
  env = os.environ.get('REGJAX_MNIST_DIR')
  return env or str(REPO_ROOT.parent / 'shared' / 'data' / 'mnist')


def classic_config(smoke: bool, mnist_dir: str, batch_size: int = 32,
                   epochs: int = 5) -> ml_collections.ConfigDict:
  """The notebook's setting: MLP 128 + Dropout 0.5, Adam 1e-3, all training data."""
  c = schema.default_config()
  if smoke:
    c.data.name = 'digits'
  else:
    c.data.name, c.data.dir = 'mnist', mnist_dir
  c.data.validation_fraction = 0.0  # The notebook trains on all 60k and tests each epoch.
  c.model.widths = (HIDDEN,)
  c.model.dropout_rate = 0.5
  c.optimizer.name, c.optimizer.learning_rate = 'adam', 1e-3
  c.train.batch_size, c.train.epochs = batch_size, epochs
  c.early_stopping.enabled = False
  return c


def machine() -> dict[str, Any]:
  """What ran the benchmark: CPU model, cores, JAX devices, load."""
  model = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      names = [l.split(':', 1)[1].strip() for l in f if l.startswith('model name')]
    model = names[0] if names else model
  except OSError:
    pass
  env = parallel.environment()
  return {'cpu': model, 'machine': platform.machine(), 'cores': os.cpu_count(),
          'python': platform.python_version(), 'jax': jax.__version__,
          'devices': [str(d) for d in jax.devices()], 'backend': jax.default_backend(),
          'accelerator': env['device_kind'],
          'default_matmul_precision': env['matmul_precision'],
          'load_average_start': list(os.getloadavg())}


def device_peak_mib() -> float | None:
  """Peak bytes in use on the first JAX device in MiB (accelerators), else None."""
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get('peak_bytes_in_use')
  return None if peak is None else peak / 2**20


# ------------------------------------------------------------------ (a) + (d): regjax


# Recorded by JAX (jax.monitoring) when an XLA compilation has finished.
_BACKEND_COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'


def _status_mib() -> dict[str, float]:
  """{'rss', 'hwm'}: this process's resident memory now and its peak, MiB (Linux)."""
  out = {}
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith(('VmRSS:', 'VmHWM:')):
          out[line[2:5].lower()] = int(line.split()[1]) / 1024.0  # kB.
  except OSError:
    pass
  return out


def regjax_classic(config: ml_collections.ConfigDict, data: Dataset, seeds: int,
                   checkpoint_dir: str | None = None,
                   on_stage: Callable[[str], None] | None = None) -> dict[str, Any]:
  """Trains `seeds` runs of the classic workload as regjax trains a run.

  Each run is a `train.RunGroup` of one run with the test set as an extra evaluation
  set, so an epoch is regjax/program.py's (train, weight statistics, test), with
  checkpoints in `checkpoint_dir/seed_<s>` at the default timing when it is given (as
  `python -m regjax.main` runs it). The seeds share one compiled program. Its compile:
  wall seconds as the group counts them (trace, lower, compile), and CPU seconds of all
  threads from the poll before the first epoch (`stop_requested`) to the end of that
  epoch's XLA compilation. on_stage: called once with each of 'init' (the first run's
  initial state made and its data placed), 'compile' (its epoch program compiled) and
  'first_epoch' (its first epoch done), as each stage ends.
  """
  test = [EvalSet('test', 'test', None, data.y_test)]
  runs, compile_s, marks = [], None, {}

  def stage(name: str) -> None:
    if on_stage is not None and name not in marks:
      on_stage(name)
    marks.setdefault(name, True)

  def on_compile(event: str, duration: float, **kwargs: Any) -> None:
    del duration, kwargs
    if event == _BACKEND_COMPILE_EVENT and 'start' in marks:
      marks.setdefault('end', time.process_time())
      stage('compile')

  def poll() -> bool:  # Polled before each epoch, just before the epoch is compiled.
    marks.setdefault('start', time.process_time())
    stage('init')
    return False

  def on_epoch(member: int, row: dict[str, float]) -> None:
    del member, row
    stage('first_epoch')

  saves = 0
  jax.monitoring.register_event_duration_secs_listener(on_compile)
  try:
    for seed in range(seeds):
      group = train.RunGroup([train.Run(config, seed, data)], eval_sets=test)
      ckpt = (None if checkpoint_dir is None else
              checkpointing.Checkpoints(os.path.join(checkpoint_dir, f'seed_{seed}')))
      try:
        ((_, history, _),) = group.fit(
            on_epoch=on_epoch, checkpoints=ckpt,
            stop_requested=poll if compile_s is None else None)
      finally:
        if ckpt is not None:
          ckpt.close()
          saves += ckpt.saves
      if compile_s is None:
        compile_s = group.compile_seconds
      runs.append({'seed': seed, 'epoch_seconds': [r['seconds'] for r in history],
                   'test_accuracy': [r['test_accuracy'] for r in history]})
  finally:
    jax.monitoring.unregister_event_duration_listener(on_compile)
  # CPU seconds of all threads: close to the wall time an idle machine would take.
  compile_cpu_s = marks['end'] - marks['start'] if 'end' in marks else None
  return _summarize_runs('regjax', runs, compile_seconds=compile_s,
                         compile_cpu_seconds=compile_cpu_s, version=f'jax {jax.__version__}',
                         checkpoints=None if checkpoint_dir is None else {
                             'interval_s': checkpointing.DEFAULT_INTERVAL_S,
                             'saves': saves})


# The stages of `regjax_child`, in order, each recorded when it ends.
MEMORY_STAGES = {
    'imports': 'imports (jax, flax, optax, orbax, regjax)',
    'backend': "JAX's CPU backend started",
    'data': 'data loaded (uint8 as stored; the gzip reader peaks above)',
    'init': 'initial state (eager init: small XLA programs) and data placed',
    'compile': 'epoch program compiled',
    'first_epoch': 'first epoch trained and evaluated',
    'end': 'all epochs and seeds, final evaluations (their program too)',
}


def regjax_child(smoke: bool, mnist_dir: str, epochs: int, seeds: int) -> dict[str, Any]:
  """The classic workload in this process as a user's run has it, and its memory.

  Run by `REGJAX_CHILD` in a fresh Python, like the Keras and PyTorch rows: the data
  loaded as regjax loads it (uint8 images, decoded inside the program), checkpoints on
  at the default timing, and the peak resident memory (VmHWM) of nothing else. The
  memory breakdown (`MEMORY_STAGES`) gives VmRSS and VmHWM after each stage.
  """
  memory = {'imports': _status_mib()}
  jax.devices()  # Starts the backend.
  memory['backend'] = _status_mib()
  config = classic_config(smoke, mnist_dir, epochs=epochs)
  data = load_dataset(config.data)
  memory['data'] = _status_mib()
  with tempfile.TemporaryDirectory() as tmp:
    out = regjax_classic(config, data, seeds, checkpoint_dir=os.path.join(tmp, 'ckpt'),
                         on_stage=lambda name: memory.setdefault(name, _status_mib()))
  memory['end'] = _status_mib()
  out['memory_stages_mib'] = memory
  out['peak_rss_mib'] = memory['end'].get('hwm') or peak_rss_mib()
  out['peak_device_mib'] = device_peak_mib()
  out['stored_input_mib'] = (data.pool.nbytes + data.test.nbytes) / 2**20
  return out


def _trainer(config: ml_collections.ConfigDict, data: Dataset) -> trainer_lib.Trainer:
  """The trainer `train.fit` builds for `config`: penalties and transforms with strength
  0 left out."""
  return trainer_lib.make_trainer(config, data.num_classes, data.num_train,
                                  trainer_lib.active_penalties(config),
                                  trainer_lib.active_transforms(config))


def matmul_floor(data: Dataset, batch_size: int, repeats: int = 3) -> dict[str, Any]:
  """Seconds of one epoch of the classic MLP's training matmuls alone, at `batch_size`.

  A `lax.scan` over contiguous batches doing only the matmuls that `FLOP_FORMULA` counts
  (x@W1, h@W2, g2@W2^T, x^T@g1, h^T@g2) and a weight update that keeps every step
  dependent on the last: no gather, dropout, softmax, optimizer or metrics. An XLA
  program training this model at this batch size cannot beat it on this machine, so it
  tells whether a speed target is reachable at all. The best of `repeats` epochs.
  """
  d = int(np.prod(data.x_train.shape[1:]))
  k = data.num_classes
  steps = len(data.x_train) // batch_size
  x = jnp.asarray(data.x_train[:steps * batch_size].reshape(steps, batch_size, d))

  def epoch(w1, w2, x):
    def body(ws, xb):
      w1, w2 = ws
      h = jnp.maximum(xb @ w1, 0)
      g2 = h @ w2
      g1 = g2 @ w2.T
      return (w1 - 1e-6 * (xb.T @ g1), w2 - 1e-6 * (h.T @ g2)), None
    return jax.lax.scan(body, (w1, w2), x)[0]

  w1 = 0.01 * jax.random.normal(jax.random.key(0), (d, HIDDEN))
  w2 = 0.01 * jax.random.normal(jax.random.key(1), (HIDDEN, k))
  f = jax.jit(epoch).lower(w1, w2, x).compile()
  jax.block_until_ready(f(w1, w2, x))
  best = math.inf
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(f(w1, w2, x))
    best = min(best, time.perf_counter() - t0)
  flops = steps * batch_size * flops_per_example(d, HIDDEN, k)
  return {'batch_size': batch_size, 'epoch_seconds': best, 'gflops': flops / best / 1e9}


def _summarize_runs(name: str, runs: list[dict[str, Any]], **extra) -> dict[str, Any]:
  steady = [s for r in runs for s in r['epoch_seconds'][1:]]
  final = [r['test_accuracy'][-1] for r in runs]
  return {'framework': name, 'runs': runs, 'seconds_per_epoch': statistics.median(steady),
          'first_epoch_seconds': statistics.median(r['epoch_seconds'][0] for r in runs),
          'final_test_accuracy': float(np.mean(final)),
          'final_test_accuracy_std': float(np.std(final, ddof=1)) if len(final) > 1 else 0.0,
          **extra}


# ------------------------------------------------------------------ (a): Keras, PyTorch

# Prepended to each framework script: its own peak memory (see `peak_rss_mib`).
_CHILD_PEAK = textwrap.dedent(r'''
  def peak_rss_mib():
    with open('/proc/self/status') as f:
      return next(int(l.split()[1]) / 1024 for l in f if l.startswith('VmHWM:'))
''')

# The classic notebook's model and fit call, in Keras 3 on the JAX backend. verbose=0:
# the notebook's progress bar would only slow Keras down.
KERAS_CHILD = _CHILD_PEAK + textwrap.dedent(r'''
  import json, os, sys, time
  os.environ['KERAS_BACKEND'] = 'jax'
  import numpy as np
  import keras
  d = np.load(sys.argv[1])
  x_train, y_train, x_test, y_test = d['x_train'], d['y_train'], d['x_test'], d['y_test']
  epochs, seeds = int(sys.argv[2]), int(sys.argv[3])

  class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
      self.t0 = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
      self.seconds.append(time.perf_counter() - self.t0)

  runs = []
  for seed in range(seeds):
    keras.utils.set_random_seed(seed)
    model = keras.models.Sequential([
        keras.Input(shape=x_train.shape[1:]),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation='relu'),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation='softmax'),
    ])
    model.compile(optimizer='adam', loss='sparse_categorical_crossentropy',
                  metrics=['accuracy'])
    timer = Timer()
    timer.seconds = []
    hist = model.fit(x_train, y_train, epochs=epochs, batch_size=32,
                     validation_data=(x_test, y_test), callbacks=[timer], verbose=0)
    runs.append({'seed': seed, 'epoch_seconds': timer.seconds,
                 'test_accuracy': [float(a) for a in hist.history['val_accuracy']]})
  import jax
  stats = jax.devices()[0].memory_stats() or {}
  print(json.dumps({'runs': runs, 'version': f'keras {keras.__version__} (backend '
                    f'{keras.backend.backend()} on {jax.devices()[0].device_kind})',
                    'peak_rss_mib': peak_rss_mib(),
                    'peak_device_mib': (stats['peak_bytes_in_use'] / 2**20
                                        if 'peak_bytes_in_use' in stats else None)}))
''')

# The classic notebook's own code, as a notebook user runs it: its preprocessing
# `x / 255.0` (float64 inputs, which Keras converts to float32 batch by batch), the model
# with logits and a from_logits loss, fit's defaults (batch 32, the progress bar) and the
# test set as validation_data. Keras 3 on the JAX backend.
NOTEBOOK_CHILD = _CHILD_PEAK + textwrap.dedent(r'''
  import json, os, sys, time
  os.environ['KERAS_BACKEND'] = 'jax'
  import numpy as np
  import keras
  d = np.load(sys.argv[1])
  scale = 255.0 if d['x_train_raw'].dtype == np.uint8 else 1.0  # digits: floats already.
  x_train, x_test = d['x_train_raw'] / scale, d['x_test_raw'] / scale
  x_train, x_test = x_train.astype(np.float64), x_test.astype(np.float64)
  y_train, y_test = d['y_train'], d['y_test']
  epochs, seeds = int(sys.argv[2]), int(sys.argv[3])

  class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
      self.t0 = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
      self.seconds.append(time.perf_counter() - self.t0)

  runs = []
  for seed in range(seeds):
    keras.utils.set_random_seed(seed)
    model = keras.models.Sequential([
        keras.Input(shape=x_train.shape[1:]),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation='relu'),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10),
    ])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer='adam', loss=loss_fn, metrics=['accuracy'])
    timer = Timer()
    timer.seconds = []
    hist = model.fit(x_train, y_train, epochs=epochs, validation_data=(x_test, y_test),
                     callbacks=[timer])
    runs.append({'seed': seed, 'epoch_seconds': timer.seconds,
                 'test_accuracy': [float(a) for a in hist.history['val_accuracy']]})
  print()  # The progress bar may leave a line open; the result is the last line.
  print(json.dumps({'runs': runs, 'version': f'keras {keras.__version__} (backend '
                    f'{keras.backend.backend()}), float64 inputs, progress bar',
                    'input_dtype': str(x_train.dtype), 'peak_rss_mib': peak_rss_mib()}))
''')

# regjax's row: experiments/benchmark.py's own `regjax_child` in a fresh Python, so that
# its peak memory is the run's alone (this process holds float32 copies for the others).
REGJAX_CHILD = textwrap.dedent(r'''
  import json, sys
  from experiments import benchmark
  result = benchmark.regjax_child(sys.argv[1] == 'smoke', sys.argv[2], int(sys.argv[3]),
                                  int(sys.argv[4]))
  print(json.dumps(result))
''')

# The same model in idiomatic eager PyTorch, on the GPU when torch sees one. Batches are
# indexed from tensors in (device) memory (no DataLoader, whose per-example collation
# would dominate); a final partial batch is kept, as Keras does. CPU thread count: the
# faster of torch's default and 1 thread in a 200-step probe, because on a busy 2-core
# machine the default OpenMP threads wait on each other and run 10-100x slower than one
# thread (seen while writing this).
TORCH_CHILD = _CHILD_PEAK + textwrap.dedent(r'''
  import json, sys, time
  import numpy as np
  import torch
  from torch import nn
  d = np.load(sys.argv[1])
  dev = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  x_train = torch.from_numpy(d['x_train']).to(dev)
  y_train = torch.from_numpy(d['y_train']).long().to(dev)
  x_test = torch.from_numpy(d['x_test']).to(dev)
  y_test = torch.from_numpy(d['y_test']).long().to(dev)
  epochs, seeds = int(sys.argv[2]), int(sys.argv[3])
  n, bs = len(x_train), 32

  def sync():  # CUDA runs asynchronously: wait for it before reading a clock.
    if dev.type == 'cuda':
      torch.cuda.synchronize()

  def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(x_train[0].numel(), 128), nn.ReLU(),
                         nn.Dropout(0.5), nn.Linear(128, 10)).to(dev)

  def steps_seconds(threads, steps=200):
    torch.set_num_threads(threads)
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for step in range(steps):
      idx = torch.randint(0, n, (bs,), device=dev)
      opt.zero_grad()
      nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
      opt.step()
    sync()
    return time.perf_counter() - t0

  probe = {t: steps_seconds(t) for t in sorted({torch.get_num_threads(), 1})}
  threads = min(probe, key=probe.get)
  torch.set_num_threads(threads)

  runs = []
  for seed in range(seeds):
    torch.manual_seed(seed)
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    seconds, accuracy = [], []
    for epoch in range(epochs):
      t0 = time.perf_counter()
      model.train()
      order = torch.randperm(n, device=dev)
      for start in range(0, n, bs):
        idx = order[start:start + bs]
        opt.zero_grad()
        loss = loss_fn(model(x_train[idx]), y_train[idx])
        loss.backward()
        opt.step()
      model.eval()
      correct = 0
      with torch.no_grad():
        for start in range(0, len(x_test), 1024):
          logits = model(x_test[start:start + 1024])
          correct += int((logits.argmax(-1) == y_test[start:start + 1024]).sum())
      accuracy.append(correct / len(x_test))
      sync()
      seconds.append(time.perf_counter() - t0)
    runs.append({'seed': seed, 'epoch_seconds': seconds, 'test_accuracy': accuracy})
  where = (torch.cuda.get_device_name() if dev.type == 'cuda' else f'{threads} thread(s)')
  print(json.dumps({'runs': runs, 'version': f'torch {torch.__version__} ({where})',
                    'thread_probe_seconds_per_200_steps': {str(k): v for k, v in probe.items()},
                    'peak_rss_mib': peak_rss_mib(),
                    'peak_device_mib': (torch.cuda.max_memory_allocated() / 2**20
                                        if dev.type == 'cuda' else None)}))
''')


def run_child(name: str, python: str, code: str, module: str, args: Sequence[str],
              env: dict[str, str] | None = None) -> dict[str, Any]:
  """Runs a framework's script with `python` and `args`; a summary, or {'skipped': why}.

  The script prints its result as JSON on its last line of output."""
  if not python:
    return {'framework': name, 'skipped': 'not requested (empty --*_python flag)'}
  # Keras 3 imports its default backend (TensorFlow) unless told otherwise.
  env = dict(os.environ, KERAS_BACKEND='jax', **(env or {}))
  try:
    probe = subprocess.run([python, '-c', f'import {module}'], capture_output=True,
                           text=True, env=env)
  except OSError as e:
    return {'framework': name, 'skipped': f'cannot run {python}: {e.strerror}'}
  if probe.returncode:
    last = (probe.stderr.strip().splitlines() or ['failed'])[-1]
    return {'framework': name, 'skipped': f'{module} cannot be imported by {python}: {last}'}
  proc = subprocess.run([python, '-c', code, *args], capture_output=True, text=True,
                        env=env)
  if proc.returncode:
    return {'framework': name, 'skipped': f'failed: {proc.stderr.strip()[-500:]}'}
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  if name == 'regjax':  # Summarized by the child already.
    return dict(out, python=python)
  extra = {k: v for k, v in out.items() if k not in ('runs',)}
  return _summarize_runs(name, out['runs'], python=python, **extra)


def regjax_in_child(smoke: bool, mnist_dir: str, epochs: int, seeds: int
                    ) -> dict[str, Any]:
  """`regjax_child` in a fresh process of this Python (this repository on its path)."""
  path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get('PYTHONPATH')) if p)
  out = run_child('regjax', sys.executable, REGJAX_CHILD, 'regjax',
                  ['smoke' if smoke else 'mnist', mnist_dir, str(epochs), str(seeds)],
                  env={'PYTHONPATH': path})
  if 'skipped' in out:
    raise RuntimeError(f"regjax's classic run failed: {out['skipped']}")
  return out


# ------------------------------------------------------------------ checkpoints


def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of a config file (e.g. 'configs/l2.py'), relative to the repo."""
  spec = importlib.util.spec_from_file_location(
      'config_' + Path(path).stem, REPO_ROOT / path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def checkpoint_workloads(smoke: bool, mnist_dir: str) -> dict[str, tuple[str, str]]:
  """{name: (config file, its arg)} of the comparisons whose checkpoint overhead is
  measured: configs/notebook.py on MNIST and configs/l2.py (digits); smoke: both on
  their :smoke forms (digits, tiny)."""
  if smoke:
    return {'notebook': ('configs/notebook.py', 'smoke'), 'l2': ('configs/l2.py', 'smoke')}
  return {'notebook': ('configs/notebook.py', f'data_dir={mnist_dir}'),
          'l2': ('configs/l2.py', '')}


def dropout_data_config(smoke: bool, mnist_dir: str) -> ml_collections.ConfigDict:
  """The data of experiments/dropout_cost.py: the default split (54,000 MNIST training
  images; smoke: digits)."""
  c = schema.default_config().data
  if not smoke:
    c.name, c.dir = 'mnist', mnist_dir
  return c


def checkpoint_overhead(config: ml_collections.ConfigDict, repeats: int = 2
                        ) -> dict[str, Any]:
  """Wall clock of a whole comparison with checkpoints at the default timing over the
  same comparison with checkpoints off, in this process.

  `experiment.run(config, workdir, checkpoint_every_s=...)` into a fresh workdir each
  time; one untimed run first compiles every program (later runs reuse them, whichever
  setting). Then `repeats` pairs, the order alternating (off-on, on-off, ...) so that a
  drift of the machine's load does not favour either side. Returns the median of the
  per-pair ratios on / off (wall and process CPU seconds, all threads, orbax's too),
  the median seconds, and the saves each checkpointed comparison started.
  """
  from regjax import experiment  # pylint: disable=g-import-not-at-top  # Plots: heavy.
  saves = []
  real = checkpointing.Checkpoints

  class Counting(real):  # Counts the saves of the comparison's groups.
    def save(self, *args, **kwargs):
      started = super().save(*args, **kwargs)
      saves[-1] += started
      return started

  def once(every: float | None) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as workdir:
      t0, c0 = time.perf_counter(), time.process_time()
      experiment.run(config, workdir, log=lambda line: None, checkpoint_every_s=every)
      return time.perf_counter() - t0, time.process_time() - c0

  checkpointing.Checkpoints = Counting
  try:
    once(None)  # Compiles.
    times = {'on': [], 'off': []}
    for i in range(repeats):
      for side in (('off', 'on') if i % 2 == 0 else ('on', 'off')):
        if side == 'on':
          saves.append(0)
        times[side].append(once(checkpointing.DEFAULT_INTERVAL_S if side == 'on' else None))
  finally:
    checkpointing.Checkpoints = real
  ratio = lambda k: statistics.median(on[k] / off[k] for on, off in zip(times['on'],
                                                                        times['off']))
  return {'interval_s': checkpointing.DEFAULT_INTERVAL_S, 'pairs': repeats,
          'off_seconds': statistics.median(t[0] for t in times['off']),
          'on_seconds': statistics.median(t[0] for t in times['on']),
          'ratio': ratio(0), 'cpu_ratio': ratio(1),
          'ratios': [on[0] / off[0] for on, off in zip(times['on'], times['off'])],
          'saves_per_comparison': saves,
          'runs': sum(variants.variant_config(config, name).seeds
                      for name in variants.names(config)),
          'load_average': list(os.getloadavg())}


# ------------------------------------------------------------------ (b): GFLOP/s


def matmul_roof(n: int, repeats: int = 5) -> dict[str, Any]:
  """GFLOP/s of an n x n float32 matmul under jit: the best of `repeats` timings."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  f = jax.jit(jnp.matmul)
  f(a, b).block_until_ready()
  best = math.inf
  for _ in range(repeats):
    t0 = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return {'n': n, 'seconds': best, 'gflops': 2 * n**3 / best / 1e9}


class _EpochProgram(NamedTuple):
  """A compiled `Trainer.train_epoch` of seed 0 with what it is called with."""
  trainer: trainer_lib.Trainer
  hparams: dict[str, jax.Array]
  x: jax.Array
  y: jax.Array
  shuffle_key: jax.Array
  dropout_key: jax.Array
  state: trainer_lib.TrainState
  compiled: Any  # (state, x, y, hparams, shuffle_key, dropout_key, epoch) -> (state, metrics)

  def __call__(self, state: trainer_lib.TrainState, epoch: int):
    return self.compiled(state, self.x, self.y, self.hparams, self.shuffle_key,
                         self.dropout_key, jnp.int32(epoch))


def _epoch_program(config: ml_collections.ConfigDict, data: Dataset) -> _EpochProgram:
  """Compiles the training epoch of `config` (the trainer and keys of `train.fit` with
  seed 0) on data's training set, held on the device as float32."""
  trainer = _trainer(config, data)
  hp = trainer_lib.penalty_hparams(config)
  x, y = jax.device_put(data.x_train), jax.device_put(data.y_train)
  k0, k1, k2 = trainer_lib.run_keys(0)
  state = trainer.init(k0, x[:1])
  compiled = jax.jit(trainer.train_epoch).lower(state, x, y, hp, k1, k2,
                                                jnp.int32(0)).compile()
  return _EpochProgram(trainer, hp, x, y, k1, k2, state, compiled)


def train_gflops(smoke: bool, mnist_dir: str, data: Dataset, batch_size: int,
                 repeats: int = 3) -> dict[str, Any]:
  """regjax training GFLOP/s at `batch_size`: the best of `repeats` epochs (no eval)."""
  program = _epoch_program(classic_config(smoke, mnist_dir, batch_size=batch_size,
                                         epochs=1), data)
  state = program.state
  best = math.inf
  for epoch in range(repeats):
    t0 = time.perf_counter()
    state, metrics = program(state, epoch)
    jax.block_until_ready(metrics)
    best = min(best, time.perf_counter() - t0)
  examples = (len(data.x_train) // batch_size) * batch_size
  d = int(np.prod(data.x_train.shape[1:]))
  flops = examples * flops_per_example(d, HIDDEN, data.num_classes)
  return {'batch_size': batch_size, 'epoch_seconds': best, 'examples': examples,
          'gflop_per_epoch': flops / 1e9, 'gflops': flops / best / 1e9}


def scan_vs_step_loop(config: ml_collections.ConfigDict, data: Dataset, repeats: int = 3
                      ) -> dict[str, Any]:
  """One training epoch as regjax's `lax.scan` vs a Python loop of a jitted step.

  The loop is what Keras does (one dispatch per batch); both gather the same batches
  (epoch 0's `trainer.batch_order`) on the device. Wall and CPU seconds (all threads),
  the best of `repeats` epochs each: CPU above wall means both cores were busy.
  """
  program = _epoch_program(config, data)
  trainer, hp, x, y, state = (program.trainer, program.hparams, program.x, program.y,
                              program.state)
  step = jax.jit(lambda s, idx, x, y: trainer.train_step(s, x[idx], y[idx], hp,
                                                         program.dropout_key),
                 donate_argnums=0)
  batches = np.asarray(trainer_lib.batch_order(program.shuffle_key, jnp.int32(0),
                                               data.num_train, config.train.batch_size))

  def run_scan():
    jax.block_until_ready(program(state, 0))

  def run_loop():
    s = jax.tree.map(jnp.copy, state)
    for idx in batches:
      s, metrics = step(s, idx, x, y)
    jax.block_until_ready(metrics)

  out = {}
  for name, fn in (('scan', run_scan), ('step_loop', run_loop)):
    fn()  # Compiles the loop's step; warms both.
    best = (math.inf, math.inf)
    for _ in range(repeats):
      t0, c0 = time.perf_counter(), time.process_time()
      fn()
      best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
    out[name] = {'wall_seconds': best[0], 'cpu_seconds': best[1]}
  return out


# ------------------------------------------------------------------ (c): sweep


def sweep_configs(smoke: bool, mnist_dir: str, workload: str, epochs: int
                  ) -> tuple[ml_collections.ConfigDict, tuple[float, ...], int]:
  """(base config, L2 strengths, seeds) of a sweep workload; 4 x 4 = 16 members.

  'classic': the classic workload for `epochs` epochs (no stop before). 'default': the
  default regime (schema.overfitting_regime: digits, 30% noisy labels, MLP 512-512), early
  stopping with patience 10, as configs/l2.py trains it; members stop at different epochs.
  The smoke forms have 2 x 2 members on tiny settings: they check the plumbing. The
  default one's members overfit within a few epochs (learning rate 3e-2, patience 1) and
  stop at different epochs, so the group also moves its running members into a smaller
  program.
  """
  if workload == 'classic':
    base = classic_config(smoke, mnist_dir, epochs=epochs)
    base.data.validation_fraction = 0.1  # Members validate each epoch, as in a comparison.
    base.early_stopping.enabled = True
  else:
    base = schema.overfitting_regime(schema.default_config())
    if smoke:
      base.data.train_size, base.model.widths, base.train.epochs = 300, (32,), 10
      base.optimizer.learning_rate = 3e-2
      base.early_stopping.patience = 1
  if smoke:
    return base, (0.0, 1e-2), 2
  return base, (0.0, 1e-4, 1e-3, 1e-2) if workload == 'classic' else (0.0, 1e-3, 1e-2,
                                                                      3e-2), 4


def lanes_per_epoch(epochs_run: Sequence[int],
                    program_size: Callable[[int], int]) -> list[int]:
  """The lanes a compacting `train.RunGroup` computed in each epoch, for members that
  ran `epochs_run` epochs each.

  Every epoch computes every lane of the program in use, lanes of stopped members too
  (they compute and keep their state). The group starts with a program of
  `program_size(K)` lanes for its K members; after an epoch, once at most half of the
  program's lanes hold running members, these move into a program of
  `program_size(next power of two >= running)` lanes (regjax/train.py). The sum of the
  list is the member-epochs computed; sum(epochs_run) those needed.
  """
  size, sizes = program_size(len(epochs_run)), []
  for epoch in range(max(epochs_run)):
    sizes.append(size)
    running = sum(e > epoch + 1 for e in epochs_run)
    if running and running <= size // 2:
      size = program_size(1 << (running - 1).bit_length())
  return sizes


def sweep_vs_sequential(base: ml_collections.ConfigDict, strengths: tuple[float, ...],
                        seeds: int) -> dict[str, Any]:
  """len(strengths) x seeds members as one vmapped `train.RunGroup` vs `train.fit` one
  run after another.

  Wall clock of each whole job, compilation included (what a user waits for). The
  sequential runs compile each distinct program once and reuse it (regjax/train.py
  caches compiled programs per process): one without the L2 term for strength 0, one
  with it for the others. The group compiles its own programs, one per size it runs
  (`reuse_compiled=False`: none of the sequential runs' programs), with compaction on.
  """
  data = load_dataset(base.data)
  runs = []
  for l2 in strengths:
    c = ml_collections.ConfigDict(base.to_dict())
    c.penalty.l2 = l2
    runs += [train.Run(c, seed, data) for seed in range(seeds)]
  t0 = time.perf_counter()
  sequential = [train.fit(r.config, r.data, r.seed)[0] for r in runs]
  sequential_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  group = train.RunGroup(runs, reuse_compiled=False)
  results = group.fit()
  vmapped_s = time.perf_counter() - t0
  acc_diff = max(abs(r['test_accuracy'] - s['test_accuracy'])
                 for (r, _, _), s in zip(results, sequential))
  # Rounding differs between the vmapped and the separate programs; where it tips an
  # early-stopping decision, a member keeps other weights and its accuracy moves more.
  same_stop = sum(r['stop_epoch'] == s['stop_epoch']
                  for (r, _, _), s in zip(results, sequential))
  needed = [r['epochs_run'] for r, _, _ in results]
  sizes = lanes_per_epoch(needed, lambda n: parallel.placement(
      n, base.train.batch_size, group.devices).size)
  compiled = [r['compile_seconds'] for r in sequential if r['compile_seconds'] > 0]
  return {'dataset': data.name, 'members': len(runs), 'train_examples': data.num_train,
          'member_epochs': sum(needed), 'vmapped_epochs': max(needed),
          'computed_member_epochs': sum(sizes), 'program_lanes_per_epoch': sizes,
          'computed_per_needed': sum(sizes) / sum(needed),
          'sequential_seconds': sequential_s,
          'sequential_compile_seconds': sum(compiled),
          'sequential_programs_compiled': len(compiled),
          'vmapped_seconds': vmapped_s, 'vmapped_compile_seconds': group.compile_seconds,
          'vmapped_programs_compiled': len(set(sizes)),
          'speedup': sequential_s / vmapped_s,
          'max_test_accuracy_difference': acc_diff, 'same_stop_epoch': same_stop}


# ------------------------------------------------------------------ report


def _met(name: str, value: float | None) -> dict[str, Any]:
  op, threshold = TARGETS[name]
  if value is None or not math.isfinite(value):
    return {'target': f'{op} {threshold}', 'value': value, 'met': None}
  met = {'>=': value >= threshold, '<=': value <= threshold, '<': value < threshold}[op]
  return {'target': f'{op} {threshold}', 'value': value, 'met': bool(met)}


def targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
  """Each issue target with the measured value and whether it is met (None: not measured)."""
  ours = results['classic']['regjax']
  out = {}
  for name, key in (('keras', 'keras_speedup_batch32'), ('torch', 'torch_speedup_batch32')):
    other = results['classic'][name]
    if 'skipped' in other:
      out[key] = _met(key, None)
      out[f'{name}_{"accuracy_gap_pt"}'] = _met('accuracy_gap_pt', None)
      continue
    out[key] = _met(key, other['seconds_per_epoch'] / ours['seconds_per_epoch'])
    gap = 100 * abs(other['final_test_accuracy'] - ours['final_test_accuracy'])
    out[f'{name}_accuracy_gap_pt'] = _met('accuracy_gap_pt', gap)
  for row in results['gflops']['by_batch']:
    if row['batch_size'] >= 256:
      out[f'roof_fraction_batch_{row["batch_size"]}'] = dict(
          _met('roof_fraction_batch_ge_256', row['roof_fraction']))
  for name, s in results['sweeps'].items():
    if s['members'] == 16:
      out[f'sweep_speedup_16_{name}'] = _met('sweep_speedup_16', s['speedup'])
  out['first_compile_seconds'] = _met('first_compile_seconds',
                                      results['first_compile_seconds'])
  # Per-epoch seconds of the dropout variant, regjax with checkpoints on.
  for name in ('notebook', 'keras', 'torch'):
    other = results['classic'][name]
    ratio = (None if 'skipped' in other
             else other['seconds_per_epoch'] / ours['seconds_per_epoch'])
    if name == 'notebook':
      out['notebook_speedup_dropout'] = _met('notebook_speedup_dropout', ratio)
    else:
      out[f'{name}_ahead'] = _met('ahead_of_peer', ratio)
  out['dropout_epoch_ratio'] = _met('dropout_epoch_ratio', results['dropout']['ratio'])
  for name, c in results['checkpoints'].items():
    out[f'checkpoint_overhead_{name}'] = _met('checkpoint_overhead', c['ratio'])
  keras = results['classic']['keras']
  out['peak_rss_vs_keras'] = _met('peak_rss_vs_keras', None if 'skipped' in keras else
                                  ours['peak_rss_mib'] / keras['peak_rss_mib'])
  return out


def memory_lines(results: dict[str, Any]) -> list[str]:
  """Where regjax's classic run's peak memory goes (its process's stages), beside the
  other rows' peaks."""
  c = results['classic']
  ours = c['regjax']
  stages = ours['memory_stages_mib']
  names = MEMORY_STAGES
  lines = ['', "### Peak memory of the classic run (MiB)", '',
           f"Stored inputs: {ours['stored_input_mib']:.0f} MiB (float32 would be "
           f"{4 * ours['stored_input_mib']:.0f}). VmRSS and peak (VmHWM) of regjax's "
           "process after each stage, and the peak's growth over the stage before:", '',
           '| stage | RSS | peak | peak growth |', '|---|---|---|---|']
  before = 0.0
  for key, label in names.items():
    if key in stages:
      st = stages[key]
      lines.append(f"| {label} | {st['rss']:.0f} | {st['hwm']:.0f} | "
                   f"+{st['hwm'] - before:.0f} |")
      before = st['hwm']
  peaks = ', '.join(f"{name} {c[name]['peak_rss_mib']:.0f}" for name in PEERS
                    if 'skipped' not in c[name])
  lines += ['', f"Peaks of each row's process: {peaks} MiB."]
  return lines


def dropout_and_checkpoint_lines(results: dict[str, Any]) -> list[str]:
  """The dropout epoch's cost and the checkpoints' overhead, as measured ratios."""
  d = results['dropout']
  lines = ['', '## Dropout and checkpoints: what they add', '',
           f"Dropout {d['rate']} epoch over the no-dropout epoch (experiments/dropout_cost.py:"
           f" batch 32, MLP 128, Adam, {d['steps']} steps, no evaluation, interleaved): "
           f"{d['ratio']:.3f} wall (median of {len(d['ratios'])} pairs; {d['dropout_seconds']:.3f}"
           f" s vs {d['no_dropout_seconds']:.3f} s), {d['cpu_ratio']:.3f} CPU time; masks: "
           f"{d['mask_bits']}; load average {d['load_average'][0]:.1f}.", '',
           'Whole comparisons (`regjax.experiment.run`) with checkpoints at the default '
           'timing over checkpoints off, in one process after a compiling run, pairs in '
           'alternating order:', '',
           '| config | runs | off s | on s | on / off wall (median) | CPU | saves per '
           'comparison | load |', '|---|---|---|---|---|---|---|---|']
  for name, ck in results['checkpoints'].items():
    lines.append(f"| {ck['config']} | {ck['runs']} | {ck['off_seconds']:.1f} | "
                 f"{ck['on_seconds']:.1f} | {ck['ratio']:.3f} | {ck['cpu_ratio']:.3f} | "
                 f"{', '.join(map(str, ck['saves_per_comparison']))} | "
                 f"{ck['load_average'][0]:.1f} |")
  return lines


def markdown(results: dict[str, Any]) -> str:
  """The summary.md text: machine, the four measurements, and the targets."""
  m, c = results['machine'], results['classic']
  accelerator = '' if m['backend'] == 'cpu' else f" ({m['accelerator']})"
  lines = [f"# regjax benchmark{' (smoke)' if results['smoke'] else ''}", '',
           f"Machine: {m['cpu']} ({m['machine']}), {m['cores']} cores, JAX {m['jax']} on "
           f"{m['backend']}{accelerator}; load average {m['load_average_start'][0]:.1f} at the start and "
           f"{m['load_average_end'][0]:.1f} at the end" + (
               f" (above {m['cores']}: other processes competed for the cores)."
               if max(m['load_average_start'][0], m['load_average_end'][0]) > m['cores']
               else '.'), '',
           f"## Classic workload ({results['dataset']}, MLP {results['input_dim']}-128-10, "
           f"Dropout 0.5, Adam, batch 32, {results['epochs']} epochs, test set each epoch, "
           f"{results['seeds']} seed(s))", '',
           '| framework | s/epoch (median, epochs 2+) | epoch 1 s | final test acc % | '
           'peak RSS MiB | peak device MiB | version |', '|---|---|---|---|---|---|---|']
  for name in PEERS:
    r = c[name]
    if 'skipped' in r:
      lines.append(f"| {name} | skipped: {r['skipped']} | | | | | |")
      continue
    device_mib = r.get('peak_device_mib')
    lines.append(f"| {name} | {r['seconds_per_epoch']:.3f} | {r['first_epoch_seconds']:.3f} | "
                 f"{100 * r['final_test_accuracy']:.2f} | {r['peak_rss_mib']:.0f} | "
                 f"{'-' if device_mib is None else f'{device_mib:.0f}'} | {r['version']} |")
  floor = c['matmul_floor']
  lines += ['', f"The classic MLP's training matmuls alone (no gather, dropout, softmax, "
                f"optimizer or evaluation) take {floor['epoch_seconds']:.3f} s per batch-32 "
                f"epoch here ({floor['gflops']:.1f} GFLOP/s): no XLA program training this model "
                f"at batch 32 can be faster here. " + ' '.join(
                    f"{TARGETS[f'{name}_speedup_batch32'][1]:.0f}x {name} would need "
                    f"{c[name]['seconds_per_epoch'] / TARGETS[f'{name}_speedup_batch32'][1]:.3f}"
                    f" s/epoch ({c[name]['seconds_per_epoch'] / floor['epoch_seconds']:.2f}x "
                    f"is the most the floor allows)."
                    for name in ('keras', 'torch') if 'skipped' not in c[name])]
  ours = c['regjax']
  speedups = ', '.join(f"{c[name]['seconds_per_epoch'] / ours['seconds_per_epoch']:.2f}x "
                       f"over {name}" for name in PEERS[1:] if 'skipped' not in c[name])
  lines += ['', f"regjax's row is a fresh process training as `python -m regjax.main` does: "
                f"inputs as stored (uint8 images decoded in the program), checkpoints on at "
                f"the default {ours['checkpoints']['interval_s']:g} s timing (saves made: "
                f"{ours['checkpoints']['saves']}). Per-epoch speedup of regjax's dropout "
                f"run: {speedups or 'no other row ran'}."]
  lines += memory_lines(results)
  lines += dropout_and_checkpoint_lines(results)
  g = results['gflops']
  lines += ['', f"## Training GFLOP/s vs the matmul roof ({g['roof']['n']}x{g['roof']['n']} "
                f"float32 matmul: {g['roof']['gflops']:.1f} GFLOP/s)", '',
            f"FLOPs per training example = {FLOP_FORMULA}; matmuls only.", '',
            '| batch | s/epoch | GFLOP/s | share of roof |', '|---|---|---|---|']
  for row in g['by_batch']:
    lines.append(f"| {row['batch_size']} | {row['epoch_seconds']:.3f} | {row['gflops']:.2f} | "
                 f"{100 * row['roof_fraction']:.1f}% |")
  scan, loop = (results['scan_vs_step_loop'][k] for k in ('scan', 'step_loop'))
  lines += ['', "One batch-32 training epoch as regjax's `lax.scan`: "
                f"{scan['wall_seconds']:.3f} s wall / {scan['cpu_seconds']:.3f} s CPU; "
                "as a Python loop of a jitted step (Keras' way): "
                f"{loop['wall_seconds']:.3f} s wall / {loop['cpu_seconds']:.3f} s CPU."]
  lines += ['', '## 16-member sweeps: vmapped (`train.RunGroup`) vs one run after another '
                '(`train.fit`)', '',
            'Wall seconds of each whole job, compilation included (in parentheses: compile '
            'seconds, programs compiled). One after another, each distinct program is '
            'compiled once and reused by the later runs. A vmapped group computes every lane '
            'of its program each epoch, stopped members\' lanes too, until at most half of '
            'the lanes hold running members; then these move into a program of the next '
            'power-of-two size. Member-epochs: needed = the sum of the members\' epochs (what '
            'the runs one after another compute), computed = the sum over epochs of the '
            'vmapped program\'s lanes.', '',
            '| workload | members | longest run, epochs | member-epochs computed / needed '
            '| sequential s (compile, programs) | vmapped s (compile, programs) | speedup '
            '| max test-acc diff | same stop epoch |',
            '|---|---|---|---|---|---|---|---|---|']
  for name, s in results['sweeps'].items():
    lines.append(f"| {name} ({s['dataset']}, {s['train_examples']} train) | {s['members']} | "
                 f"{s['vmapped_epochs']} | {s['computed_member_epochs']} / "
                 f"{s['member_epochs']} = {s['computed_per_needed']:.2f} | "
                 f"{s['sequential_seconds']:.1f} ({s['sequential_compile_seconds']:.1f}, "
                 f"{s['sequential_programs_compiled']}) | "
                 f"{s['vmapped_seconds']:.1f} ({s['vmapped_compile_seconds']:.1f}, "
                 f"{s['vmapped_programs_compiled']}) | "
                 f"{s['speedup']:.2f}x | {s['max_test_accuracy_difference']:.1e} | "
                 f"{s['same_stop_epoch']}/{s['members']} |")
  lines += ['',
            'First compile of the classic epoch program: '
            f"{results['first_compile_seconds']:.2f} s wall"
            + ('' if results['first_compile_cpu_seconds'] is None else
               f", {results['first_compile_cpu_seconds']:.2f} s CPU") + '. '
            f"Peak RSS of this benchmark process (float32 copies of the data for the "
            f"other rows, every section): {results['peak_rss_mib']['end']:.0f} MiB."
            + ('' if results['peak_device_mib']['end'] is None else
               f" Peak device memory: {results['peak_device_mib']['end']:.0f} MiB here, "
               f"{results['peak_device_mib']['regjax_classic']:.0f} MiB in the classic "
               "run's process."),
            '', '## Targets (set for a 2-core CPU)', '']
  if m['backend'] != 'cpu':
    lines += [f"This run is on {m['backend']} ({m['accelerator']}): the targets were set for a "
              "2-core CPU and are shown for reference only.", '']
  lines += ['| target | required | measured | met |', '|---|---|---|---|']
  for name, t in results['targets'].items():
    value = '-' if t['value'] is None else f"{t['value']:.3g}"
    met = 'not measured' if t['met'] is None else ('yes' if t['met'] else 'NO')
    lines.append(f"| {name} | {t['target']} | {value} | {met} |")
  return '\n'.join(lines) + '\n'


def main(argv: list[str]) -> None:
  del argv
  if not flags.FLAGS.out:
    raise app.UsageError('--out is required')
  smoke, mnist_dir = flags.FLAGS.smoke, _mnist_dir()
  epochs = 2 if smoke else flags.FLAGS.epochs
  out = Path(flags.FLAGS.out)
  out.mkdir(parents=True, exist_ok=True)
  results: dict[str, Any] = {'smoke': smoke, 'machine': machine(), 'epochs': epochs,
                             'seeds': flags.FLAGS.seeds, 'flop_formula': FLOP_FORMULA}
  log = lambda text: print(text, flush=True)

  config = classic_config(smoke, mnist_dir, epochs=epochs)
  data = load_dataset(config.data)
  results['dataset'] = data.name
  results['input_dim'] = int(np.prod(data.pool.shape[1:]))
  seeds = flags.FLAGS.seeds
  log(f'(a) classic workload on {data.name}: regjax (a fresh process, checkpoints on) ...')
  ours = regjax_in_child(smoke, mnist_dir, epochs, seeds)
  results['first_compile_seconds'] = ours['compile_seconds']
  results['first_compile_cpu_seconds'] = ours['compile_cpu_seconds']
  results['peak_rss_mib'] = {'regjax_classic': ours['peak_rss_mib']}
  results['peak_device_mib'] = {'regjax_classic': ours['peak_device_mib']}
  classic = {'regjax': ours}
  with tempfile.TemporaryDirectory() as tmp:
    npz = os.path.join(tmp, 'data.npz')
    # (N, H, W) images: float32 in [0, 1] as the Keras and PyTorch rows take them, and as
    # stored (uint8 for MNIST) for the notebook's own `x / 255.0`.
    np.savez(npz, x_train=data.x_train[..., 0], y_train=data.y_train,
             x_test=data.x_test[..., 0], y_test=data.y_test,
             x_train_raw=data.pool[data.train_idx][..., 0], x_test_raw=data.test[..., 0])
    for name, python, code, module in (
        ('keras', flags.FLAGS.keras_python, KERAS_CHILD, 'keras'),
        ('notebook', flags.FLAGS.keras_python, NOTEBOOK_CHILD, 'keras'),
        ('torch', flags.FLAGS.torch_python, TORCH_CHILD, 'torch')):
      log(f'(a) classic workload: {name} ...')
      classic[name] = run_child(name, python, code, module, [npz, str(epochs), str(seeds)])
  classic['matmul_floor'] = matmul_floor(data, min(32, len(data.x_train)))
  results['classic'] = classic
  for name in PEERS:
    r = classic[name]
    log(f'    {name}: ' + (f"skipped ({r['skipped']})" if 'skipped' in r else
                           f"{r['seconds_per_epoch']:.3f} s/epoch, test acc "
                           f"{100 * r['final_test_accuracy']:.2f}%"))

  log('(b) GFLOP/s vs the matmul roof ...')
  # The roof is measured beside each batch size and the best one is kept: on a shared
  # machine a single reading may catch a busy moment and flatter the ratios.
  roofs, by_batch = [], []
  roof_n = flags.FLAGS.roof_n or (256 if smoke else 2048 if jax.default_backend() == 'cpu'
                                  else 8192)
  for bs in (32, 256, 1024):
    roofs.append(matmul_roof(roof_n))
    by_batch.append(train_gflops(smoke, mnist_dir, data, min(bs, len(data.x_train))))
  roof = max(roofs, key=lambda r: r['gflops'])
  for row in by_batch:
    row['roof_fraction'] = row['gflops'] / roof['gflops']
    log(f"    batch {row['batch_size']}: {row['gflops']:.2f} GFLOP/s = "
        f"{100 * row['roof_fraction']:.1f}% of {roof['gflops']:.1f}")
  results['gflops'] = {'roof': roof, 'roof_readings_gflops': [r['gflops'] for r in roofs],
                       'by_batch': by_batch}
  results['scan_vs_step_loop'] = scan_vs_step_loop(config, data)
  log('    batch 32 epoch, lax.scan vs a Python loop of jitted steps: ' + ', '.join(
      f"{k} {v['wall_seconds']:.3f} s wall / {v['cpu_seconds']:.3f} s CPU"
      for k, v in results['scan_vs_step_loop'].items()))

  results['sweeps'] = {}
  # The smoke form runs the tiny early-stopping sweep only: compiles dominate it.
  for workload in ('default',) if smoke else ('classic', 'default'):
    log(f'(c) 16-member sweep on the {workload} workload: sequential vs vmapped ...')
    s = sweep_vs_sequential(*sweep_configs(smoke, mnist_dir, workload,
                                           1 if smoke else flags.FLAGS.sweep_epochs))
    results['sweeps'][workload] = s
    log(f"    sequential {s['sequential_seconds']:.1f} s, vmapped {s['vmapped_seconds']:.1f} s:"
        f" speedup {s['speedup']:.2f}x; member-epochs computed / needed "
        f"{s['computed_member_epochs']} / {s['member_epochs']} = "
        f"{s['computed_per_needed']:.2f}")

  log('(e) dropout: the dropout-0.5 training epoch over the no-dropout epoch ...')
  from experiments import dropout_cost  # pylint: disable=g-import-not-at-top  # Plots.
  results['dropout'] = dropout_cost.dropout_cost(
      load_dataset(dropout_data_config(smoke, mnist_dir)), repeats=2 if smoke else 7)
  d = results['dropout']
  log(f"    {d['ratio']:.3f} ({d['dropout_seconds']:.3f} s vs {d['no_dropout_seconds']:.3f} s"
      f" per epoch of {d['steps']} steps; CPU time {d['cpu_ratio']:.3f})")

  results['checkpoints'] = {}
  for name, (path, arg) in checkpoint_workloads(smoke, mnist_dir).items():
    log(f'(f) checkpoints: {path} with checkpoints at the default timing over off ...')
    c = checkpoint_overhead(load_config_file(path, arg), repeats=1 if smoke else 2)
    c['config'] = f'{path}:{arg}' if arg else path
    results['checkpoints'][name] = c
    log(f"    {c['ratio']:.3f} (off {c['off_seconds']:.1f} s, on {c['on_seconds']:.1f} s; "
        f"CPU time {c['cpu_ratio']:.3f}; saves {c['saves_per_comparison']})")

  results['peak_rss_mib']['end'] = peak_rss_mib()
  results['peak_device_mib']['end'] = device_peak_mib()
  from regjax import report  # pylint: disable=g-import-not-at-top  # Plots: heavy.
  results['machine']['load_average_end'] = list(os.getloadavg())
  results['targets'] = targets(results)
  report.atomic_write_json(str(out / 'results.json'), results)
  text = markdown(results)
  report.atomic_write_text(str(out / 'summary.md'), text)
  log('')
  log(text)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
