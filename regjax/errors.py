"""The one exception type for bad input, and its one-line message format."""

from typing import Any


class ConfigError(ValueError):
  """Bad user input: a config field, a data file or a command-line value.

  The message is always one line: the field, the bad value, and what is allowed,
  so that the entrypoint can print it without a traceback and exit non-zero.
  """

  def __init__(self, field: str, value: Any, allowed: str):
    self.field = field
    self.value = value
    self.allowed = allowed
    text = f'{field}={value!r}: {allowed}'
    super().__init__(' '.join(text.split()))  # Never more than one line.
