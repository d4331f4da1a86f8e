r"""Tuned per-unit max-norm, alone and with tuned dropout, vs the tuned baseline.

  python -m regjax.main --config=configs/maxnorm.py

Each variant has 6 grid points and each of 8 replicates reports the point best on
validation (val_loss): the baseline tunes Adam's learning rate; max-norm tunes c
(optimizer.max_norm: 0 = off, 0.5 .. 4); dropout with max-norm tunes the rate (0.2, 0.5)
x c (0, 1, 3) together (Srivastava et al. 2014 use both).
Shows (measured, 8 replicates, 2-core CPU, 6.0 min): neither row is resolved from the
tuned baseline. Baseline 91.83 ± 3.45 % test accuracy; max-norm 93.39 ± 1.85 (Δ +1.56
pp, 95% CI [-1.70, +4.82], Holm p=0.34; chosen c 0.5 [0, 2]); dropout with max-norm
93.86 ± 1.19 (Δ +2.03 pp, [-0.37, +4.43], Holm p=0.22; chosen rate 0.5, c 0 [0, 3]:
validation mostly turns max-norm off once dropout is on). Full table: README.md, "Results".
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
