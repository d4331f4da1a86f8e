"""Experiments that measure the classic notebook's claims (see experiments/README.md)."""
