"""regjax: regularization in deep learning, measured with JAX, Flax Linen and optax.

`import regjax` loads nothing heavy; `regjax.load_run` (regjax/evaluate.py) imports JAX
on first use, so that `python -m regjax.main --help` answers at once.
"""

from typing import Any

# Public name -> the submodule that defines it, imported when the name is first read.
_LAZY = {'load_run': 'regjax.evaluate'}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
  if name in _LAZY:
    import importlib  # pylint: disable=g-import-not-at-top
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
  return sorted(list(globals()) + __all__)
