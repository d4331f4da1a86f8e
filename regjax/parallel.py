"""Scale-out helpers: data-parallel epochs over a device mesh, multi-host start-up, the
persistent compilation cache, and a description of where a process computes.

Data parallel with `jax.sharding` (no pmap): a 1-D `Mesh` whose one axis, 'batch',
spans the devices. Each training batch is laid out `NamedSharding(mesh, P('batch'))`, so
every device holds batch_size / n_devices examples; parameters, optimizer state and the
dataset are replicated. Under `jax.jit` the program keeps its single-device meaning: the
loss mean, hence the gradient, and BatchNorm's batch mean and variance are reductions over
the GLOBAL batch, which XLA's SPMD partitioner turns into local sums plus an all-reduce.
So a sharded epoch computes the same numbers as `Trainer.train_epoch` on one device (up
to float summation order), and every device ends with the same parameters.

Multi-host (TPU pods, SLURM, Open MPI): call `maybe_initialize_distributed()` first thing
in the process, before any other JAX call; `jax.devices()` then lists every host's
devices and the same `batch_mesh()` spans them all.
"""

from importlib import metadata
import os
from typing import Any, Callable, Mapping, Sequence

import jax
from jax.experimental.compilation_cache import compilation_cache
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from regjax.errors import ConfigError
from regjax.train import Trainer, TrainState

BATCH_AXIS = 'batch'


def batch_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh with axis 'batch' over `devices` (default: all, across hosts)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (BATCH_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis split over the mesh's 'batch' axis: (B, ...) -> (B / n, ...) each."""
  return NamedSharding(mesh, P(BATCH_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh."""
  return NamedSharding(mesh, P())


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf of `tree` (arrays, train state, dataset) on all mesh devices."""
  return jax.device_put(tree, replicated(mesh))


def make_sharded_train_epoch(trainer: Trainer, mesh: Mesh) -> Callable[..., Any]:
  """`trainer.train_epoch` with each batch split over the mesh (data parallel).

  Returns a jitted epoch(state, x, y, hparams, shuffle_key, dropout_key, epoch) ->
  (state, metrics) with the contract of `Trainer.train_epoch`: x (N, ...), y (N,) the
  whole training set (replicated; see `replicate`), the same shuffled order and dropout
  keys, so the result equals the one-device epoch within float tolerance. The state
  comes back replicated.

  Raises:
    ConfigError: if train.batch_size is not a multiple of the mesh's device count.
  """
  n_dev = mesh.devices.size
  bs = trainer.batch_size
  if bs % n_dev:
    raise ConfigError('train.batch_size', bs,
                      f'a multiple of the {n_dev} devices of the batch mesh')
  split, rep = batch_sharding(mesh), replicated(mesh)

  def epoch_fn(state: TrainState, x, y, hparams, shuffle_key, dropout_key, epoch):
    # The batch order of Trainer.train_epoch, restated here because the gathered batch
    # has to be laid out over the mesh between the gather and the step; the tests pin
    # that both give the same epoch.
    n = x.shape[0]
    steps = n // bs
    order = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n)
    batches = order[:steps * bs].reshape(steps, bs)

    def body(state, idx):
      xb = jax.lax.with_sharding_constraint(x[idx], split)
      yb = jax.lax.with_sharding_constraint(y[idx], split)
      return trainer.train_step(state, xb, yb, hparams, dropout_key)

    state, step_metrics = jax.lax.scan(body, state, batches)
    return state, jax.tree.map(jnp.mean, step_metrics)

  return jax.jit(epoch_fn, in_shardings=rep, out_shardings=rep)


# Environment variables that mean "this process is one of several" to
# jax.distributed.initialize's cluster auto-detection (jax/_src/clusters/).
_MULTI_HOST_ENV = {
    'JAX_COORDINATOR_ADDRESS': 'explicit coordinator (with JAX_NUM_PROCESSES, '
                               'JAX_PROCESS_ID)',
    'MEGASCALE_COORDINATOR_ADDRESS': 'multi-slice TPU',
    'SLURM_STEP_NODELIST': 'SLURM job step',
    'OMPI_MCA_orte_hnp_uri': 'Open MPI (mpirun)',
}


def multi_host_environment(env: Mapping[str, str] | None = None) -> str | None:
  """Names the multi-process launcher that `env` (default os.environ) shows, or None.

  A single Colab / Cloud TPU VM host is not multi-host; a TPU pod slice is: its
  TPU_WORKER_HOSTNAMES lists more than one host. SLURM and Open MPI count only with
  more than one task.
  """
  env = os.environ if env is None else env
  hosts = [h for h in env.get('TPU_WORKER_HOSTNAMES', '').split(',') if h.strip()]
  if len(hosts) > 1:
    return 'TPU pod slice'
  for var, name in _MULTI_HOST_ENV.items():
    if var not in env:
      continue
    if var == 'SLURM_STEP_NODELIST' and int(env.get('SLURM_NTASKS', '1') or 1) <= 1:
      continue
    if var == 'OMPI_MCA_orte_hnp_uri' and int(env.get('OMPI_COMM_WORLD_SIZE', '1') or 1) <= 1:
      continue
    return name
  return None


def maybe_initialize_distributed(env: Mapping[str, str] | None = None) -> bool:
  """Calls `jax.distributed.initialize()` when a multi-host launcher is detected.

  Must run before any other JAX call in the process (initialize() refuses once a
  backend exists). With no arguments JAX reads the coordinator, process count and
  process id from the launcher's environment (TPU pod metadata, SLURM, Open MPI,
  JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID). Returns True if it
  initialized now or earlier, False on a single host (nothing to do).
  """
  if jax.distributed.is_initialized():
    return True
  if multi_host_environment(env) is None:
    return False
  jax.distributed.initialize()
  return True


def enable_compilation_cache(path: str, min_compile_seconds: float = 0.0,
                             min_entry_bytes: int = 0) -> str:
  """Turns on JAX's persistent compilation cache in folder `path` (created).

  A later process running the same program on the same backend and JAX version loads
  the compiled executable from `path` instead of compiling it again. JAX's defaults
  only cache programs that took >= 1 s to compile; regjax's epochs compile in about a
  second on a CPU, so the default here caches everything.

  Args:
    path: cache folder; may be shared by processes (writes are atomic).
    min_compile_seconds: do not cache programs that compiled faster than this.
    min_entry_bytes: do not cache executables smaller than this (0 = JAX's choice).
  Returns:
    The absolute cache path.
  """
  path = os.path.abspath(os.path.expanduser(path))
  os.makedirs(path, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', float(min_compile_seconds))
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', int(min_entry_bytes))
  # JAX decides once per process whether the cache is in use, at the first compile; a
  # reset makes a call after earlier compiles take effect too.
  compilation_cache.reset_cache()
  return path


def environment() -> dict[str, Any]:
  """Where this process computes, for the record of a run (JSON-ready).

  Keys: 'backend' ('cpu', 'gpu', 'tpu'), 'device_kind' (e.g. 'NVIDIA H200'), 'devices'
  and 'processes' (counts), 'matmul_precision' (JAX's `default_matmul_precision`
  setting; None = JAX's default, which is full float32 on a CPU but TF32 on recent NVIDIA
  GPUs and bfloat16 passes on TPUs: results then differ from a CPU's by more than
  rounding), and the versions of jax, jaxlib, flax and optax.
  """
  versions = {}
  for name in ('jax', 'jaxlib', 'flax', 'optax'):
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      versions[name] = None
  precision = jax.config.jax_default_matmul_precision
  return {'backend': jax.default_backend(), 'device_kind': jax.devices()[0].device_kind,
          'devices': jax.device_count(), 'processes': jax.process_count(),
          'matmul_precision': None if precision is None else str(precision), **versions}
