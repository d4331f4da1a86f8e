"""Where tests find the real datasets in shared/ (never copied into the repo)."""

import os
from pathlib import Path

MNIST_FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
               't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')


def mnist_search_dir() -> Path:
  """$REGJAX_MNIST_DIR if set, else shared/data/mnist beside the repo root."""
  env = os.environ.get('REGJAX_MNIST_DIR')
  if env:
    return Path(env)
  return Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'mnist'


def mnist_dir() -> Path | None:
  """The folder with the four MNIST IDX files (.gz or uncompressed), or None if absent."""
  d = mnist_search_dir()
  for stem in MNIST_FILES:
    if not ((d / f'{stem}.gz').is_file() or (d / stem).is_file()):
      return None
  return d
