"""Tuned variants: choosing each replicate's grid point on validation, and what was chosen.

A variant that tunes (`tune.FIELD = (...)` in the config; regjax/variants.py `grid`)
trains every grid point for every replicate. For each replicate the point with the best
validation value of the selection metric (`config.select`, by default the early-stopping
monitor) is chosen -- on the validation numbers of the weights each run reports, never
on the test set -- and only then is that point's test accuracy the replicate's result.
Every point's run still evaluates the test set once, at its end, so that the selection
figure can show test accuracy against strength; nothing here reads it to choose.
"""

import math
import statistics
from typing import Any, Mapping, Sequence

import ml_collections

from regjax import early_stopping
from regjax.errors import ConfigError
from regjax.variants import Grid

SELECT_METRICS = ('val_loss', 'val_accuracy')


def selection_metric(config: ml_collections.ConfigDict) -> tuple[str, str]:
  """(record key, 'min' or 'max') that picks a grid point: `select` or the monitor."""
  metric = config.select or config.early_stopping.monitor
  if metric not in SELECT_METRICS:
    raise ConfigError('select' if config.select else 'early_stopping.monitor', metric,
                      f'the selection metric must be one of {", ".join(SELECT_METRICS)} '
                      "(set select='val_loss' or 'val_accuracy' to choose grid points)")
  return metric, early_stopping.resolve_mode('auto', metric)


def score(record: Mapping[str, Any], metric: str, mode: str) -> float:
  """The metric as 'higher is better'; -inf for a diverged or non-finite run."""
  value = record.get(metric)
  if record.get('diverged') or value is None or not math.isfinite(value):
    return -math.inf
  return value if mode == 'max' else -value


def choose(records: Sequence[Mapping[str, Any]], metric: str, mode: str) -> int:
  """Index of the grid point with the best validation `metric`; ties -> the first.

  records: one run record per grid point, in grid order (only validation keys and
  'diverged' are read).
  """
  scores = [score(r, metric, mode) for r in records]
  return max(range(len(scores)), key=lambda j: (scores[j], -j))


def replicate_record(grid: Grid, records: Sequence[Mapping[str, Any]], metric: str,
                     mode: str) -> dict[str, Any]:
  """A replicate's result: its chosen point's record, plus how it was chosen.

  Adds 'chosen' ({field: value}, {} when untuned), 'chosen_index', 'select' (the
  metric) and 'grid': per point {'setting', 'val_metric', 'val_accuracy',
  'test_accuracy', 'diverged'}.
  """
  j = choose(records, metric, mode)
  out = dict(records[j])
  out.update(
      chosen=dict(grid.points[j]), chosen_index=j, select=metric,
      grid=[{'setting': dict(p), 'val_metric': r.get(metric),
             'val_accuracy': r.get('val_accuracy'), 'test_accuracy': r.get('test_accuracy'),
             'diverged': bool(r.get('diverged'))} for p, r in zip(grid.points, records)])
  return out


def _on_edge(value: Any, values: Sequence[Any]) -> bool:
  """Whether a chosen value is at an end of the grid that could be widened.

  The largest value is such an end, and the smallest unless it is 0 (0 = off: choosing it
  says the regularizer did not help, not that the grid is too narrow).
  """
  numbers = sorted(values)
  if len(numbers) < 2:
    return False
  return value == numbers[-1] or (value == numbers[0] and numbers[0] != 0)


def summarize_choices(grid: Grid, records: Sequence[Mapping[str, Any]]
                      ) -> dict[str, Any]:
  """What a variant chose over its replicates.

  Returns {'fields': {field: {'median', 'min', 'max', 'on_edge'}}, 'edge_fraction' (share
  of replicates whose choice sits on a grid edge in some field), 'widen' (True when that
  is at least half of them), 'replicates'}. Empty 'fields' for an untuned variant.
  """
  fields = {}
  edge = [False] * len(records)
  for field in grid.fields:
    values = [r['chosen'][field] for r in records]
    grid_values = grid.values(field)
    numeric = [float(v) for v in values]
    fields[field] = {'median': statistics.median(numeric), 'min': min(numeric),
                     'max': max(numeric),
                     'on_edge': sum(_on_edge(v, grid_values) for v in values)}
    edge = [e or _on_edge(v, grid_values) for e, v in zip(edge, values)]
  fraction = sum(edge) / len(records) if records else 0.0
  return {'fields': fields, 'edge_fraction': fraction,
          'widen': bool(fields) and fraction >= 0.5, 'replicates': len(records)}


def _num(value: float) -> str:
  return f'{value:g}'


def format_choices(summaries: Mapping[str, Mapping[str, Any]], metric: str) -> list[str]:
  """Lines saying what each tuned variant chose, with a warning where the grid is narrow."""
  tuned = {name: s for name, s in summaries.items() if s['fields']}
  if not tuned:
    return []
  lines = [f'Chosen per replicate on validation ({metric}); median [min, max] over '
           'replicates:']
  for name, s in tuned.items():
    parts = [f"{field} {_num(f['median'])} [{_num(f['min'])}, {_num(f['max'])}]"
             for field, f in s['fields'].items()]
    line = f"  {name}: {'; '.join(parts)}"
    if s['widen']:
      line += (f" -- WARNING: on a grid edge in {round(s['edge_fraction'] * s['replicates'])}"
               f"/{s['replicates']} replicates; widen the grid")
    lines.append(line)
  return lines


def selection_entry(name: str, grid: Grid, records: Sequence[Mapping[str, Any]]
                    ) -> dict[str, Any]:
  """One variant's entry for `report.plot_selection` from its replicate records."""
  return {'variant': name, 'fields': list(grid.fields),
          'grid': [dict(p) for p in grid.points],
          'replicates': [{'points': [{'val_accuracy': g['val_accuracy'],
                                      'test_accuracy': g['test_accuracy'],
                                      'val_metric': g['val_metric']} for g in r['grid']],
                          'chosen': r['chosen_index']} for r in records]}
