r"""The classic notebook experiment: MNIST, Dense 128 + dropout 0.5 vs none, 5 epochs.

  python -m regjax.main --config=configs/notebook.py:data_dir=/path/to/mnist_idx

Setup: MNIST, Flatten -> Dense 128 relu -> (Dropout 0.5) -> Dense 10, Adam 1e-3, batch
32, 5 epochs, no early stopping (the last weights are kept), no label noise, 5 seeds.
Like the notebook, it trains on all 60,000 training images (validation_fraction=0, so
there are no validation metrics) and reports the test set. One difference: Keras
initializes Dense kernels glorot-uniform, regjax lecun-normal. Without :data_dir the
data comes through TFDS; with :smoke and neither :data_dir nor :dataset it switches to
the embedded digits, so tests run offline without MNIST.

Shows (measured with :data_dir=../shared/data/mnist, 5 seeds, one fixed split): no
dropout 97.58 ± 0.15 % test accuracy (train 98.96 %), dropout 0.5 97.29 ± 0.11 % (train
97.97 %), Δ -0.29 pp (95% CI [-0.50, -0.08], sign-flip p=0.062, the floor for 5 pairs):
lower on every seed, yet 5 seeds cannot resolve it at 5 %. Both match the Keras
original (~97.4-97.8 % without dropout, ~97.2 % with): after 5 epochs this model is not
yet overfitting, so dropout costs a little accuracy at this budget. Runtime: 57 s wall
clock on the 2-core CPU at load 4.
Options: :smoke, :dataset=NAME, :data_dir=DIR, :seeds=N.
"""

from regjax import config_args
from regjax import schema
from regjax import variants


def get_config(arg: str | None = None):
  """Notebook replication: MLP (128,), Adam 1e-3, batch 32, 5 epochs, no early stop."""
  opts = config_args.parse_arg(arg)
  c = schema.default_config()
  c.data.name = 'mnist'
  c.data.label_noise = 0.0
  # The notebook trained on all 60,000 training images and only evaluated on the test set.
  c.data.validation_fraction = 0.0
  c.model.widths = (128,)
  c.optimizer.name = 'adam'
  c.optimizer.learning_rate = 1e-3
  c.train.batch_size = 32
  c.train.epochs = 5
  c.early_stopping.enabled = False
  # There is no validation split to watch, but the disabled stopper still tracks its
  # monitor (for the best-epoch column and to stop on a non-finite value).
  c.early_stopping.monitor = 'train_loss'
  c.seeds = 5
  # The classic fixed setting: the same data for every replicate (only the seed varies).
  c.resample = False
  variants.set_variants(c, **{
      'no_dropout': {},
      'dropout_0p5': {'model.dropout_rate': 0.5},
  })
  if opts.smoke and not opts.data_dir and not opts.dataset:
    # Tests run offline without MNIST: smoke checks the plumbing on the embedded digits.
    c.data.name = 'digits'
  return config_args.apply_common(c, opts)
