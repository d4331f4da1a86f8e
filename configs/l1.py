r"""Tuned L1 three ways -- penalty, subgradient, proximal -- vs the tuned baseline.

  python -m regjax.main --config=configs/l1.py

Each variant tunes one field over 7 grid points and each of 8 replicates reports the
point best on validation (val_loss): the baseline tunes Adam's learning rate; the coupled
penalty (penalty.l1) and the subgradient in the optimizer (optimizer.l1_subgradient,
the same gradient added inside the chain) tune over 0 and 6 log-spaced strengths
(1e-6 .. 1e-2); the proximal step (optimizer.l1_prox: soft-threshold by lr * l1_prox
after each Adam step, the only one that makes exact zeros) over 0 and 6 log-spaced
strengths (1e-3 .. 3).
Shows (measured): see README.md, "Results".
Options: :smoke, :dataset=NAME, :data_dir=DIR, :seeds=N.
"""

from regjax import config_args
from regjax import schema
from regjax import variants

_STRENGTHS = variants.log_grid(1e-6, 1e-2, 6, zero=True)


def get_config(arg: str | None = None):
  """L1 comparison: tuned baseline, tuned L1 penalty, subgradient and proximal step."""
  opts = config_args.parse_arg(arg)
  c = schema.overfitting_regime(schema.default_config())
  c.seeds = 8  # The sign-flip test's smallest p, 2/2^8, survives Holm over 3 rows.
  variants.set_variants(c, **{
      'baseline': {'tune.optimizer.learning_rate': (3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3,
                                                    1e-2)},
      'penalty': {'tune.penalty.l1': _STRENGTHS},
      'subgradient': {'tune.optimizer.l1_subgradient': _STRENGTHS},
      'prox': {'tune.optimizer.l1_prox': variants.log_grid(1e-3, 3.0, 6, zero=True)},
  })
  return config_args.apply_common(c, opts)
