r"""Tuned per-unit max-norm, alone and with tuned dropout, vs the tuned baseline.

  python -m regjax.main --config=configs/maxnorm.py

Each variant has 6 grid points and each of 8 replicates reports the point best on
validation (val_loss): the baseline tunes Adam's learning rate; max-norm tunes c
(optimizer.max_norm: 0 = off, 0.5 .. 4); dropout with max-norm tunes the rate (0.2, 0.5)
x c (0, 1, 3) together (Srivastava et al. 2014 use both).
Shows (measured): see README.md, "Results".
Options: :smoke, :dataset=NAME, :data_dir=DIR, :seeds=N.
"""

from regjax import config_args
from regjax import schema
from regjax import variants


def get_config(arg: str | None = None):
  """Max-norm comparison: tuned baseline, tuned c, tuned dropout rate x c."""
  opts = config_args.parse_arg(arg)
  c = schema.overfitting_regime(schema.default_config())
  c.seeds = 8  # The sign-flip test's smallest p, 2/2^8, survives Holm over 2 rows.
  variants.set_variants(c, **{
      'baseline': {'tune.optimizer.learning_rate': (3e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2)},
      'maxnorm': {'tune.optimizer.max_norm': (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)},
      'dropout_maxnorm': {'tune.model.dropout_rate': (0.2, 0.5),
                          'tune.optimizer.max_norm': (0.0, 1.0, 3.0)},
  })
  return config_args.apply_common(c, opts)
