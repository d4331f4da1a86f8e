#!/usr/bin/env bash
# The GPU numbers of the README in one go, on a machine with an NVIDIA GPU and a Python
# that has regjax's requirements with a CUDA jaxlib (plus keras and torch for their rows):
#
#   bash experiments/gpu_benchmark.sh MNIST_DIR OUT [PYTHON]
#
# Writes into OUT: gpu.txt (card, driver, package versions), benchmark.json and
# benchmark.md (experiments/benchmark.py on real MNIST, Keras and PyTorch on the same GPU),
# l2.json and l2.csv (`python -m regjax.main --config=configs/l2.py`, whose comparisons run
# vmapped on an accelerator: train.vectorize='auto'), then runs the training, sweep and
# early-stopping tests on the GPU. Each step has its own time limit
# and a failed step does not stop the next; the exit status is the first failure's.
set -u
mnist=${1:?usage: gpu_benchmark.sh MNIST_DIR OUT [PYTHON]}
out=${2:?usage: gpu_benchmark.sh MNIST_DIR OUT [PYTHON]}
py=${3:-python3}
mkdir -p "$out"
work=$(mktemp -d)
# Keras and PyTorch run in child processes beside regjax's: JAX's default of taking 75%
# of the GPU memory up front would starve them.
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
status=0
step() {  # step SECONDS NAME COMMAND...: runs one step, records its exit status.
  local limit=$1 name=$2
  shift 2
  echo "== $name (limit ${limit}s) $(date -u +%T)"
  timeout "$limit" "$@"
  local rc=$?
  echo "== $name: exit $rc $(date -u +%T)"
  [ "$status" -eq 0 ] && status=$rc
  return 0
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$py" - <<'EOF'
import importlib
for name in ('jax', 'jaxlib', 'flax', 'optax', 'chex', 'orbax.checkpoint', 'ml_collections',
             'keras', 'torch'):
  try:
    module = importlib.import_module(name)
    print(name, getattr(module, '__version__', '?'))
  except Exception as e:  # A missing framework only skips its benchmark row.
    print(name, 'not importable:', type(e).__name__, e)
import jax
print('devices', jax.devices())
EOF
} 2>&1 | tee "$out/gpu.txt"

# The benchmark also times whole comparisons with checkpoints on and off (configs/notebook.py,
# configs/l2.py) and the notebook's own Keras code: minutes, hence the limits.
step 240 'benchmark smoke (digits)' "$py" -m experiments.benchmark --smoke \
  --out="$work/smoke" --keras_python= --torch_python=
step 900 'benchmark (MNIST)' "$py" -m experiments.benchmark --mnist_dir="$mnist" \
  --out="$work/bench" --keras_python="$py" --torch_python="$py"
cp "$work/bench/results.json" "$out/benchmark.json" 2>/dev/null
cp "$work/bench/summary.md" "$out/benchmark.md" 2>/dev/null
step 90 'configs/l2.py' "$py" -m regjax.main --config=configs/l2.py --workdir="$work/l2"
cp "$work/l2/results.json" "$out/l2.json" 2>/dev/null
cp "$work/l2/results.csv" "$out/l2.csv" 2>/dev/null
# The training, sweep and early-stopping tests on the GPU (CI runs them on a CPU only).
step 90 'tests on the GPU' "$py" -m pytest -q -x -p no:cacheprovider tests/test_train.py \
  tests/test_sweep.py tests/test_early_stopping.py
rm -rf "$work"
exit "$status"
