r"""Every regularizer family, each tuned on validation, against the tuned baseline.

  python -m regjax.main --config=configs/compare_all.py

Each variant tunes one field over 5 grid points (the baseline and BatchNorm the learning
rate; the others their strength, with 0 = off in the grid) and each of 10 replicates
reports the point best on validation (val_loss). With 7 rows against the baseline, Holm
needs the sign-flip test's smallest p, 2/2^10, to stay under 0.05/7: hence 10 replicates.
Shows (measured, 10 replicates, 2-core CPU, about 13 min): no row is resolved after
Holm over 7 rows. Baseline 91.64 ± 2.95 % test accuracy; the largest gains are stopping
on val_accuracy +2.93 pp (95% CI [+0.93, +4.94], p=0.0078, Holm p=0.055), max-norm +1.93
([-0.33, +4.20], Holm p=0.47) and dropout +1.71 ([-0.56, +3.98], Holm p=0.62); decay
+1.58, L1-prox +1.09 (13.5% exact zeros), batch norm +0.56 and L2 -0.11 pp, all Holm p=1.
Full table: README.md, "Results".
Options: :smoke, :dataset=NAME, :data_dir=DIR, :seeds=N.
"""

from regjax import config_args
from regjax import schema
from regjax import variants

_LR = (3e-4, 1e-3, 2e-3, 5e-3, 1e-2)


def get_config(arg: str | None = None):
  """Tuned baseline vs tuned L2, decay, L1-prox, dropout, BN, max-norm, val_accuracy."""
  opts = config_args.parse_arg(arg)
  c = schema.overfitting_regime(schema.default_config())
  c.seeds = 10
  variants.set_variants(c, **{
      'baseline': {'tune.optimizer.learning_rate': _LR},
      'l2': {'tune.penalty.l2': variants.log_grid(1e-4, 1e-1, 4, zero=True)},
      'decay': {'tune.optimizer.weight_decay': variants.log_grid(1e-1, 1e2, 4, zero=True)},
      'l1_prox': {'tune.optimizer.l1_prox': variants.log_grid(1e-2, 3.0, 4, zero=True)},
      'dropout': {'tune.model.dropout_rate': (0.0, 0.2, 0.3, 0.4, 0.5)},
      'batch_norm': {'model.batch_norm': True, 'tune.optimizer.learning_rate': _LR},
      'maxnorm': {'tune.optimizer.max_norm': (0.0, 0.5, 1.0, 2.0, 4.0)},
      # Not a penalty: early stopping on val_accuracy instead of val_loss (the points
      # are still chosen on val_loss, the comparison's selection metric).
      'stop_on_val_accuracy': {'early_stopping.monitor': 'val_accuracy',
                               'tune.optimizer.learning_rate': _LR},
  })
  return config_args.apply_common(c, opts)
