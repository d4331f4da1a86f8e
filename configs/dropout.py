r"""Dropout rates 0 / 0.2 / 0.5, and inverted vs classic scaling at 0.5.

  python -m regjax.main --config=configs/dropout.py

Shows: TBD
Options: :smoke, :dataset=NAME, :data_dir=DIR, :seeds=N.
"""

from regjax import config_args
from regjax import schema
from regjax import variants


def get_config(arg: str | None = None):
  """Dropout comparison: none, 0.2, 0.5 (inverted), 0.5 (classic)."""
  opts = config_args.parse_arg(arg)
  c = schema.overfitting_regime(schema.default_config())
  variants.set_variants(c, **{
      'baseline': {},
      'dropout_0p2': {'model.dropout_rate': 0.2},
      'dropout_0p5': {'model.dropout_rate': 0.5},
      # Same rate, scaled at inference instead of in training (Srivastava et al. 2014).
      'dropout_0p5_classic': {'model.dropout_rate': 0.5, 'model.dropout_mode': 'classic'},
  })
  return config_args.apply_common(c, opts)
