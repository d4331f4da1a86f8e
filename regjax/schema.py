"""The whole regjax config schema, every field commented; configs/*.py start from it."""

from typing import Any

import ml_collections
from ml_collections import config_dict

from regjax import regularizers
from regjax.errors import ConfigError


def default_config() -> ml_collections.ConfigDict:
  """Returns the default config: every field regjax reads, with its default."""
  c = ml_collections.ConfigDict()
  c.seed = 0          # Base seed: replicate i uses jax.random.key(seed + i).
  c.seeds = 3         # Number of replicates per variant (>= 1): seeds seed .. seed+seeds-1.
  c.resample = True   # Each replicate draws its own validation split, label noise and
                      # subsample (data.split_seed + its seed), so intervals include split
                      # variance; False: every replicate uses data.split_seed.
  c.select = ''       # Validation metric that picks a tuned variant's grid point per
                      # replicate (val_loss | val_accuracy); '' = early_stopping.monitor.
  c.equal_grids = True  # Every variant must have as many grid points as the others
                        # (its `tune` grid); False allows unequal tuning budgets.

  c.data = ml_collections.ConfigDict()
  c.data.name = 'digits'   # digits | mnist | fashion_mnist | tfds:NAME | npz:PATH
  c.data.dir = ''          # Folder with the IDX .gz files (mnist, fashion_mnist); '' = TFDS.
  c.data.train_size = 0    # Subsample the training pool to this many examples; 0 = all.
  c.data.validation_fraction = 0.1  # Share of the training pool held out for early stopping.
  c.data.label_noise = 0.0  # Share of training labels replaced by uniform random classes.
  c.data.split_seed = 0    # Seeds the validation split, subsample and label noise; each
                           # replicate adds its seed when `resample` (all variants of a
                           # replicate see the same data).
  c.data.standardize = False  # Standardize each input feature with the mean and std of the
                              # training split (any float range; constant features left at 0).

  c.model = ml_collections.ConfigDict()
  c.model.name = 'mlp'          # mlp | cnn
  c.model.widths = (128,)       # Hidden widths (mlp) or dense widths after the convs (cnn).
  c.model.conv_features = (32, 64)  # cnn only: features of the two 3x3 convolutions.
  c.model.activation = 'relu'   # relu | gelu | tanh | elu | swish
  c.model.dropout_rate = 0.0    # Dropout after each hidden layer, in [0, 1).
  c.model.dropout_mode = 'inverted'  # inverted (scale 1/(1-p) in training) | classic
                                     # (no scaling in training, x(1-p) at inference)
  c.model.input_dropout_rate = 0.0  # Dropout on the inputs, in [0, 1) (Srivastava: 0.2).
  c.model.batch_norm = False    # BatchNorm after each hidden Dense/Conv, before activation.
  c.model.bn_momentum = 0.9     # Running average: ra = m * ra + (1 - m) * batch_stat.
  c.model.bn_epsilon = 1e-5     # Added to the variance before the square root.
  c.model.kernel_init_scale = 1.0  # Multiplies the default (lecun normal) kernel init.

  c.penalty = ml_collections.ConfigDict()  # Coupled: terms added to the loss.
  # One field per registered penalty (l1, l2, ...; regjax/regularizers.py), default 0.
  for entry in regularizers.penalty_list():
    c.penalty[entry.name] = 0.0
  c.penalty.mask = r'kernel$'  # Regex on 'Module_0/kernel'-style paths; matches are penalized.

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'adam'         # sgd | momentum | adam | adamw
  c.optimizer.learning_rate = 1e-3  # Peak learning rate.
  c.optimizer.schedule = 'constant'  # constant | cosine (decays to 0 over train.epochs)
  c.optimizer.momentum = 0.9        # momentum only (and nesterov=False).
  c.optimizer.b1 = 0.9              # adam/adamw.
  c.optimizer.b2 = 0.999            # adam/adamw.
  # One field per registered transform (grad_clip_norm, l1_subgradient, weight_decay,
  # l1_prox, max_norm, ...; regjax/regularizers.py), default 0 = left out of the chain.
  for entry in regularizers.transform_list():
    c.optimizer[entry.name] = 0.0
  c.optimizer.mask = r'kernel$'     # Regex: which parameters decay / L1 / max-norm touch.

  c.early_stopping = ml_collections.ConfigDict()
  c.early_stopping.enabled = True     # False: train all train.epochs, keep the last weights.
  c.early_stopping.monitor = 'val_loss'  # Any per-epoch metric: val_loss, val_accuracy, ...
  c.early_stopping.mode = 'auto'      # min | max | auto (max for *accuracy, else min)
  c.early_stopping.min_delta = 0.0    # An improvement must beat the best by more than this.
  c.early_stopping.patience = 10      # Stop after this many epochs without improvement.
  c.early_stopping.baseline = config_dict.placeholder(float)  # Must beat this to count.
  c.early_stopping.start_from_epoch = 0  # Epochs before this are not monitored.
  c.early_stopping.restore_best = True   # Restore the best params and batch_stats.

  c.train = ml_collections.ConfigDict()
  c.train.epochs = 100          # Maximum epochs.
  c.train.batch_size = 32       # Training batch (the remainder of an epoch is dropped).
  c.train.eval_batch_size = 1024  # Evaluation batch (no effect on results).
  c.train.vectorize = 'auto'    # auto | always | never: runs that differ only in
                                # array-valued fields (seeds, strengths, learning rate;
                                # regjax/sweep.py) train as one vmapped program. auto:
                                # only on GPU/TPU (on a CPU it measured no faster).

  # Named variants: each overrides fields of the base above (regjax/variants.py), and
  # may tune fields on a grid: e.g. tune.penalty.l2 = (0.0, 1e-4, 1e-3) trains every
  # value (every combination, for several fields) and reports, per replicate, the one
  # best on validation (`select`).
  c.variants = ml_collections.ConfigDict()
  c.variants.baseline = ml_collections.ConfigDict()
  c.order = 'baseline'  # Variant names in table order; the first is the baseline that
                        # differences are measured against. (ConfigDict sorts its keys.)
  c.only = ''  # Comma-separated subset of `order` to run ('' = all); its first is the baseline.
  return c


def overfitting_regime(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Sets the default regime where regularization visibly matters (in place).

  The embedded digits data with 30% of the training labels replaced at random (the
  validation and test labels stay clean) and a wide MLP (512, 512): the network can
  memorize the noisy labels, so what stops it from doing so shows in the test accuracy.
  Early stopping watches val_loss with patience 10, for at most 100 epochs.
  """
  c.data.label_noise = 0.3
  c.model.widths = (512, 512)
  c.train.epochs = 100
  c.early_stopping.patience = 10
  return c


def _type_error(field: str, value: Any, default: Any) -> ConfigError | None:
  """A ConfigError if `value` cannot stand where the schema has `default`, else None."""
  def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)

  def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)

  if isinstance(default, bool):
    ok, kind = isinstance(value, bool), 'true or false'
  elif isinstance(default, int):
    ok, kind = is_int(value), 'an integer'
  elif isinstance(default, float):
    ok, kind = is_number(value), 'a number'
  elif isinstance(default, str):
    ok, kind = isinstance(value, str), 'text'
  elif isinstance(default, tuple) and all(is_int(v) for v in default):
    ok = isinstance(value, (tuple, list)) and all(is_int(v) for v in value)
    kind = 'a tuple of integers'
  else:
    return None
  if ok:
    return None
  return ConfigError(field, value, f'must be {kind}, as in regjax/schema.py')


def check_types(config: ml_collections.ConfigDict, schema_config: ml_collections.ConfigDict,
                prefix: str = '') -> None:
  """Raises ConfigError for the first field whose type differs from the schema's default.

  Ranges are checked where the fields are used (models, optimizers, data, ...).

  The command line's ConfigDict already refuses ill-typed values; configs built in
  Python (notebooks, scripts) can hold any, e.g. False where a rate belongs, which the
  range checks downstream would wave through as 0.
  """
  for key, default in schema_config.items():
    field = f'{prefix}{key}'
    if key == 'variants' or key not in config:
      continue  # Variants are applied onto the checked base by regjax/variants.py.
    value = config[key]
    if isinstance(default, ml_collections.ConfigDict):
      if not isinstance(value, ml_collections.ConfigDict):
        raise ConfigError(field, value, 'must be a section, as in regjax/schema.py')
      check_types(value, default, field + '.')
    elif default is None:  # A placeholder such as early_stopping.baseline.
      kind = schema_config.get_ref(key).get_type()
      if value is not None and (kind is not float or _type_error(field, value, 0.0)):
        raise ConfigError(field, value, 'must be a number or None, as in regjax/schema.py')
    elif (error := _type_error(field, value, default)) is not None:
      raise error
