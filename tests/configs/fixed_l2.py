r"""A test fixture: the L2 comparison at fixed strengths, with variant names such as
`l2_1e-2` that Python would read as arithmetic (the command line must address them).

  python -m regjax.main --config=tests/configs/fixed_l2.py:smoke
"""

from regjax import config_args
from regjax import schema
from regjax import variants


def get_config(arg: str | None = None):
  """Baseline, coupled L2 at 3 strengths, decoupled decay at 2 (untuned)."""
  opts = config_args.parse_arg(arg)
  c = schema.overfitting_regime(schema.default_config())
  variants.set_variants(c, **{
      'baseline': {},
      'l2_1e-3': {'penalty.l2': 1e-3},
      'l2_1e-2': {'penalty.l2': 1e-2},
      'l2_3e-2': {'penalty.l2': 3e-2},
      'decay_1e-1': {'optimizer.weight_decay': 1e-1},
      'decay_1': {'optimizer.weight_decay': 1.0},
  })
  return config_args.apply_common(c, opts)
