"""Scale-out: placing a program's runs and batches on a device mesh, multi-host start-up,
the persistent compilation cache, and a description of where a process computes.

A program of P runs (lanes) is placed on a 2-D `jax.sharding.Mesh` with axes
('members', 'data') over all devices, across hosts after `jax.distributed.initialize`:
runs are split over the 'members' axis (each device holds P / members of them), and when
there are fewer runs than devices each run's batch is split over the 'data' axis. Data
parallel keeps the program's one-device meaning under `jax.jit`: the loss mean, hence the
gradient, and BatchNorm's batch mean and variance are reductions over the GLOBAL batch,
which XLA's SPMD partitioner turns into local sums plus an all-reduce. The inputs are
replicated. With one device nothing is placed: the program is a plain `jax.jit`.
"""

import dataclasses
from importlib import metadata
import math
import os
from typing import Any, Mapping, Sequence

import jax
from jax.experimental.compilation_cache import compilation_cache
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from regjax import models

MEMBERS_AXIS, DATA_AXIS = 'members', 'data'


def _divisors(n: int) -> list[int]:
  return [k for k in range(1, n + 1) if n % k == 0]


@dataclasses.dataclass(frozen=True)
class Placement:
  """How a program's lanes and batches sit on the devices.

  size: lanes of the program (runs plus padding), a multiple of `members`.
  members, data: the mesh's axis sizes; members * data devices are used.
  mesh: the ('members', 'data') Mesh, or None on a single device.
  """
  size: int
  members: int
  data: int
  mesh: Mesh | None

  @property
  def devices(self) -> int:
    """Devices in use."""
    return self.members * self.data

  def lanes_sharding(self) -> NamedSharding | None:
    """Leading (lane) axis over 'members'; None on one device."""
    return None if self.mesh is None else NamedSharding(self.mesh, P(MEMBERS_AXIS))

  def replicated(self) -> NamedSharding | None:
    """A full copy on every device of the mesh; None on one device."""
    return None if self.mesh is None else NamedSharding(self.mesh, P())

  def batch_sharding(self) -> NamedSharding | None:
    """A run's batch axis over 'data' (inside a run: under vmap the lane axis is added);
    None when batches are not split."""
    if self.mesh is None or self.data == 1:
      return None
    return NamedSharding(self.mesh, P(DATA_AXIS))

  def describe(self, runs: int, total_devices: int) -> str:
    """E.g. '12 runs over 8 devices (members axis 4 x data axis 2)'."""
    text = (f'{runs} run{"s" if runs != 1 else ""} over {self.devices} '
            f'device{"s" if self.devices != 1 else ""} (members axis {self.members} x data '
            f'axis {self.data})')
    if self.size > runs:
      text += f', {self.size - runs} idle lane{"s" if self.size - runs != 1 else ""}'
    if total_devices > self.devices:
      text += (f'; {total_devices - self.devices} of {total_devices} devices idle (the '
               'batch size does not split further)')
    return text


def placement(runs: int, batch_size: int,
              devices: Sequence[jax.Device] | None = None) -> Placement:
  """Places a program of `runs` lanes over `devices` (default: all, across hosts).

  Chooses the members-axis size m (a divisor of the device count) that gives each
  device the least work, ceil(runs / m) lanes times batch_size / d examples, where the
  data axis d is the largest divisor of devices / m that divides the batch (devices that
  cannot be used stay idle); among equals the one with the fewest padding lanes, then
  the largest m, since runs on their own devices need no communication. Lanes are
  padded to a multiple of m.
  """
  devices = jax.devices() if devices is None else list(devices)
  n = len(devices)
  if n == 1:
    return Placement(size=runs, members=1, data=1, mesh=None)

  def data_axis(members):
    return max(k for k in _divisors(n // members) if batch_size % k == 0)

  def work(members):
    return math.ceil(runs / members) * batch_size / data_axis(members)

  members = min(_divisors(n), key=lambda m: (work(m), math.ceil(runs / m) * m, -m))
  data = data_axis(members)
  size = math.ceil(runs / members) * members
  mesh = Mesh(np.asarray(devices[:members * data]).reshape(members, data),
              (MEMBERS_AXIS, DATA_AXIS))
  return Placement(size=size, members=members, data=data, mesh=mesh)


def put(tree: Any, sharding: NamedSharding | None) -> Any:
  """Places numpy or device arrays with `sharding` (None: JAX's default device).

  Works across hosts: every process passes the same full values and keeps its shards.
  """
  if sharding is None:
    return jax.device_put(tree)
  def one(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      x = np.asarray(x)
    else:
      return jax.device_put(x, sharding)  # Already global: reshard.
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return jax.tree.map(one, tree)


def to_host(tree: Any) -> Any:
  """numpy copies of a tree of device arrays, also of arrays spread over several hosts
  (every process must call it at the same point: it gathers across processes)."""
  def fully_addressable(x):
    return not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated
  if all(fully_addressable(x) for x in jax.tree.leaves(tree)):
    return jax.device_get(tree)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return multihost_utils.process_allgather(tree, tiled=True)


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
  backend exists). JAX reads the coordinator, process count and process id from the
  launcher's environment (TPU pod metadata, SLURM, Open MPI); with an explicit
  JAX_COORDINATOR_ADDRESS they come from JAX_NUM_PROCESSES and JAX_PROCESS_ID, which JAX
  itself does not read (e.g. two processes on one machine). Returns True if it
  initialized now or earlier, False on a single host (nothing to do).
  """
  if jax.distributed.is_initialized():
    return True
  env = os.environ if env is None else env
  if multi_host_environment(env) is None:
    return False
  kwargs = {}
  if 'JAX_COORDINATOR_ADDRESS' in env:
    for var, arg in (('JAX_NUM_PROCESSES', 'num_processes'),
                     ('JAX_PROCESS_ID', 'process_id')):
      if var in env:
        kwargs[arg] = int(env[var])
  jax.distributed.initialize(**kwargs)
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
  rounding), 'prng_impl' (JAX's default PRNG implementation, e.g. 'threefry2x32': the
  keys, hence initial weights, data order and dropout masks, follow from it) and
  'dropout_mask' (`models.DROPOUT_BITS`: how masks turn key bits into units; a seed's
  dropout runs change when either changes), and the versions of jax, jaxlib, flax and
  optax.
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
          'matmul_precision': None if precision is None else str(precision),
          'prng_impl': str(jax.config.jax_default_prng_impl),
          'dropout_mask': models.DROPOUT_BITS, **versions}
