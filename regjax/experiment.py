"""`run(config, workdir)`: train every variant over every seed, then report the comparison.

This is what `python -m regjax.main` calls and what tests call. Each (variant, seed) is
trained with early stopping on the validation split and tested once on its restored
best weights (regjax/train.py). The same seed gives every variant the same
initialization key, data order and dropout keys, so per-seed differences are paired.

The workdir receives config.json first, metrics.jsonl as epochs finish, and at the end
results.json, results.csv and curves.png, each written atomically: a results file that
exists is complete.
"""

import json
import os
import sys
import time
from typing import Any, Callable

import ml_collections

from regjax import report
from regjax import train
from regjax import variants
from regjax.data import Dataset, load_dataset
from regjax.errors import ConfigError

Log = Callable[[str], None]


def _stderr(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


def _check_top_level(config: ml_collections.ConfigDict) -> None:
  if not isinstance(config.seeds, int) or config.seeds < 1:
    raise ConfigError('seeds', config.seeds, 'must be an integer >= 1')
  if not isinstance(config.seed, int) or config.seed < 0:
    raise ConfigError('seed', config.seed, 'must be an integer >= 0')


def prepare_workdir(workdir: str) -> None:
  """Creates `workdir`, or fails with a one-line ConfigError if it cannot be written.

  A workdir that already holds results.json is refused, so an earlier comparison is never
  overwritten.
  """
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, '.write-test')
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise ConfigError('workdir', workdir, f'cannot be written ({e.strerror})') from None
  if os.path.exists(os.path.join(workdir, 'results.json')):
    raise ConfigError('workdir', workdir, 'already holds results.json from an earlier run; '
                      'pass a new --workdir')


def plan(config: ml_collections.ConfigDict) -> list[tuple[str, train.Runner]]:
  """Validates the whole comparison before anything trains.

  Returns [(variant name, its Runner)], loading each distinct data config once and
  building every variant's model and optimizer, so that a bad value in the last variant
  fails in a second, not after the first variants have trained.
  """
  _check_top_level(config)
  datasets: dict[str, Dataset] = {}
  out = []
  for name in variants.names(config):
    vcfg = variants.variant_config(config, name)
    _check_top_level(vcfg)
    key = json.dumps(vcfg.data.to_dict(), sort_keys=True)
    if key not in datasets:
      datasets[key] = load_dataset(vcfg.data)
    out.append((name, train.Runner(vcfg, datasets[key])))
  return out


def _progress(name: str, seed_index: int, seeds: int, log: Log, every: int = 10
              ) -> Callable[[dict[str, float]], None]:
  def on_epoch(row):
    if row['epoch'] % every == 0:
      val = (f"val_acc {100 * row['val_accuracy']:6.2f}%  val_loss {row['val_loss']:.4f}"
             if 'val_accuracy' in row else '')
      log(f"  [{name} seed {seed_index + 1}/{seeds}] epoch {row['epoch']:3d}  "
          f"train_loss {row['train_loss']:.4f}  {val}  ({row['seconds']:.3f} s)")
  return on_epoch


def run(config: ml_collections.ConfigDict, workdir: str, log: Log = _stderr
        ) -> dict[str, Any]:
  """Runs the comparison of `config` and writes its outputs into `workdir`.

  Args:
    config: a full config with `variants` (regjax/schema.py, configs/*.py).
    workdir: output folder (created; must not hold an earlier results.json).
    log: receives one progress line at a time (default: stderr).
  Returns:
    {'rows': summary rows (report.summarize), 'records': one per (variant, seed),
     'table': the text table, 'paths': the files written}.
  """
  jobs = plan(config)
  prepare_workdir(workdir)
  report.atomic_write_json(os.path.join(workdir, 'config.json'), config.to_dict())

  records, history = [], []
  total = sum(runner.config.seeds for _, runner in jobs)
  done, t_start = 0, time.perf_counter()
  with report.MetricsWriter(os.path.join(workdir, 'metrics.jsonl')) as metrics:
    for name, runner in jobs:
      seeds = runner.config.seeds
      for i in range(seeds):
        seed = runner.config.seed + i
        record, rows, _ = runner.fit(seed, on_epoch=_progress(name, i, seeds, log))
        for row in rows:
          full = {'variant': name, 'seed': seed, **row}
          metrics.write(full)
          history.append(full)
        record = {'variant': name, **record}
        records.append(record)
        done += 1
        elapsed = time.perf_counter() - t_start
        status = 'DIVERGED' if record['diverged'] else (
            f"test_acc {100 * record['test_accuracy']:.2f}%")
        log(f"[{done}/{total}] {name} seed {seed}: {status}, best epoch "
            f"{record['best_epoch']}, stopped at {record['stop_epoch']} "
            f"({record['stop_reason']}); {elapsed:.0f} s elapsed, about "
            f"{elapsed / done * (total - done):.0f} s left")

  baseline = jobs[0][0]
  rows = report.summarize(records, baseline=baseline)
  table = report.format_table(rows, baseline=baseline)
  paths = report.write_results(workdir, rows, records)
  curves = os.path.join(workdir, 'curves.png')
  report.plot_curves(history, curves)
  paths['curves'] = curves
  return {'rows': rows, 'records': records, 'table': table, 'paths': paths}
