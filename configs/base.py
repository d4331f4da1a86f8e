r"""The whole schema with its defaults: one variant, no regularization.

  python -m regjax.main --config=configs/base.py

Shows: the plain baseline (MLP 128, Adam 1e-3, batch 32, early stopping on val_loss with
patience 10) on the embedded digits data, over 3 seeds. Every field is listed and
commented in regjax/schema.py; copy this file to start a new comparison.
Options: :smoke, :dataset=NAME, :data_dir=DIR, :seeds=N.
"""

from regjax import config_args
from regjax import schema


def get_config(arg: str | None = None):
  """Returns the default config (regjax/schema.py) with the common :options applied."""
  return config_args.apply_common(schema.default_config(), config_args.parse_arg(arg))
