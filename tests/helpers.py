"""Small helpers several test files share."""

import hashlib
import os

import ml_collections


def override(config: ml_collections.ConfigDict, **dotted) -> ml_collections.ConfigDict:
  """Sets {'section.field': value, ...} on `config` in place; returns it."""
  for name, value in dotted.items():
    section, field = name.split('.')
    config[section][field] = value
  return config


def snapshot(workdir: str) -> dict[str, str]:
  """{relative path: sha256} of every file under `workdir`."""
  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
  return out
