r"""No early stopping vs early stopping with and without restoring the best weights.

  python -m regjax.main --config=configs/early_stopping.py

Shows: TBD
Options: :smoke, :dataset=NAME, :data_dir=DIR, :seeds=N.
"""

from regjax import config_args
from regjax import schema
from regjax import variants


def get_config(arg: str | None = None):
  """Early-stopping comparison: fixed epochs (baseline), patience 3/10/30, no restore."""
  opts = config_args.parse_arg(arg)
  c = schema.overfitting_regime(schema.default_config())
  variants.set_variants(c, **{
      # All train.epochs (100), keeping the last weights: what early stopping is against.
      'no_early_stop': {'early_stopping.enabled': False},
      'patience_10': {},
      # Stops at the same epoch as patience_10 but keeps the weights of that epoch,
      # `patience` epochs past the best one.
      'patience_10_last': {'early_stopping.restore_best': False},
      'patience_3': {'early_stopping.patience': 3},
      'patience_30': {'early_stopping.patience': 30},
  })
  return config_args.apply_common(c, opts)
