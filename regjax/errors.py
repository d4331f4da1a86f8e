"""The one exception type for bad input, and its one-line message format."""

from typing import Any

_UNSET = object()


class ConfigError(ValueError):
  """Bad user input: a config field, a data file or a command-line value.

  `ConfigError(field, value, allowed)` reads `field=value: allowed`, always on one line,
  so that the entrypoint can print it without a traceback and exit non-zero.
  `ConfigError(message)` (one argument) also works, because libraries such as
  ml_collections re-raise errors as `type(e)(message)`; then `field` is None.
  """

  def __init__(self, field: str, value: Any = _UNSET, allowed: str = ''):
    if value is _UNSET:
      self.field, self.value, self.allowed = None, None, ''
      super().__init__(field)
      return
    self.field = field
    self.value = value
    self.allowed = allowed
    text = f'{field}={value!r}: {allowed}'
    super().__init__(' '.join(text.split()))  # Never more than one line.


def find_config_error(error: BaseException | None) -> 'ConfigError | None':
  """The first ConfigError with a field in `error`'s cause/context chain, if any."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, ConfigError) and error.field is not None:
      return error
    error = error.__cause__ or error.__context__
  return None
