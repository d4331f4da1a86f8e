"""Test-session settings shared by every test module."""

import jax

# The equality tests (vmapped = separate runs, 8 devices = 1, ...) allow float32 rounding.
# On recent NVIDIA GPUs JAX's default matmul precision is TF32 (10-bit mantissa), whose
# rounding, grown over an epoch, broke two of them by ~1e-4 relative on an H200 (measured);
# on a CPU this setting changes nothing.
jax.config.update('jax_default_matmul_precision', 'highest')
