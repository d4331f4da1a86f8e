r"""Max-norm on each unit's incoming weights, with and without dropout 0.5.

  python -m regjax.main --config=configs/maxnorm.py

Shows (measured, default regime of regjax.schema.overfitting_regime, 3 seeds): c = 3,
the value of Srivastava et al. (2014), barely acts here: the baseline's per-unit
incoming norms at its best epoch stay below 2 (seed 0: median 1.10-1.75 per layer, max
1.86), so maxnorm_3 gives 89.70 ± 2.93 vs 89.48 ± 3.08 (+0.22 pp, 95% CI [-0.33, +0.77])
and the same weight norm. A binding c = 1 gives 91.85 ± 0.68 (+2.37 pp, [-4.53, +9.27]):
within noise. Dropout 0.5 alone gives 95.33 ± 1.11 (+5.85 pp, [-3.00, +14.71]); adding
max-norm 3 or 1 changes it by -0.15 pp ([-0.79, +0.49]) and +0.37 pp ([-0.47, +1.21])
(paired, from results.json): no measurable gain. Max-norm's role in Srivastava et al. is
to allow the very large momentum-SGD learning rates that dropout nets like; tried here
(momentum 0.9, lr 0.1 and 1 with dropout), lr 0.1 peaked within 5 epochs at ~84 % and
lr 1 failed to learn (10-11 %) with or without max-norm 3, so that setting was not kept.
Runtime: about 27 s on the idle 2-core machine.
Options: :smoke, :dataset=NAME, :data_dir=DIR, :seeds=N.
"""

from regjax import config_args
from regjax import schema
from regjax import variants

_DROPOUT = {'model.dropout_rate': 0.5}


def get_config(arg: str | None = None):
  """Max-norm comparison: c = 3 (Srivastava et al. 2014) and 1, with/without dropout."""
  opts = config_args.parse_arg(arg)
  c = schema.overfitting_regime(schema.default_config())
  variants.set_variants(c, **{
      'baseline': {},
      'maxnorm_3': {'optimizer.max_norm': 3.0},
      'maxnorm_1': {'optimizer.max_norm': 1.0},
      'dropout_0p5': _DROPOUT,
      'dropout_0p5_maxnorm_3': {**_DROPOUT, 'optimizer.max_norm': 3.0},
      'dropout_0p5_maxnorm_1': {**_DROPOUT, 'optimizer.max_norm': 1.0},
  })
  return config_args.apply_common(c, opts)
