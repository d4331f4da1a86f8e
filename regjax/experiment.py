"""`run(config, workdir)`: train every variant over every seed, then report the comparison.

This is what `python -m regjax.main` calls and what tests call. Each (variant, seed) is
trained with early stopping on the validation split and tested once on its restored
best weights (regjax/train.py). The same seed gives every variant the same
initialization key, data order and dropout keys, so per-seed differences are paired.

The workdir belongs to one config. It receives config.json first; per run, orbax
checkpoints while it trains and a finished-run file at the end (regjax/checkpointing.py);
metrics.jsonl as runs finish; and at the end results.json, results.csv and curves.png.
Every results file is written atomically: a results file that exists is complete.

Resuming: running the same config into the same workdir again skips finished runs
(their records are read back), continues an unfinished one from its last checkpoint,
and gives bit-for-bit the numbers of an uninterrupted run (wall-clock seconds aside). A
workdir that holds results of a different config is refused. SIGTERM and Ctrl-C
checkpoint the current run and stop with status 143 / 130 (`checkpointing.Preempted`).
"""

import contextlib
import json
import os
import sys
import time
from typing import Any, Callable

import ml_collections

from regjax import checkpointing
from regjax import parallel
from regjax import report
from regjax import schema
from regjax import sweep
from regjax import train
from regjax import variants
from regjax.data import Dataset, load_dataset
from regjax.errors import ConfigError

Log = Callable[[str], None]
CONFIG_JSON = 'config.json'


def _stderr(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


def _check_top_level(config: ml_collections.ConfigDict) -> None:
  if not isinstance(config.seeds, int) or config.seeds < 1:
    raise ConfigError('seeds', config.seeds, 'must be an integer >= 1')
  if not isinstance(config.seed, int) or config.seed < 0:
    raise ConfigError('seed', config.seed, 'must be an integer >= 0')


def _as_json(config: ml_collections.ConfigDict) -> Any:
  """The config as config.json stores it (tuples as lists, NaN as null)."""
  return json.loads(json.dumps(report.to_jsonable(config.to_dict())))


def _first_difference(old: Any, new: Any, path: str = '') -> str:
  """'train.epochs: 3 in the workdir, 5 now' for the first field where two configs differ."""
  if isinstance(old, dict) and isinstance(new, dict):
    for key in sorted(set(old) | set(new)):
      where = f'{path}.{key}' if path else key
      if key not in old or key not in new:
        return (f"{where}: {'absent' if key not in old else 'present'} in the workdir, "
                f"{'absent' if key not in new else 'present'} now")
      if old[key] != new[key]:
        return _first_difference(old[key], new[key], where)
  return f'{path or "the config"}: {old!r} in the workdir, {new!r} now'


def _holds_results(workdir: str) -> bool:
  metrics = os.path.join(workdir, report.METRICS_JSONL)
  return (os.path.exists(os.path.join(workdir, report.RESULTS_JSON))
          or (os.path.exists(metrics) and os.path.getsize(metrics) > 0)
          or checkpointing.has_checkpoints(workdir))


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> bool:
  """Creates `workdir` and claims it for `config`; returns whether it resumes.

  A workdir whose config.json equals `config` is resumed (True). A workdir with results
  (results.json, metrics or checkpoints) of a different config, or of an unknown one
  (no readable config.json), is refused with a one-line ConfigError, so an earlier
  comparison is never overwritten. Otherwise config.json is (re)written (False).
  """
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, '.write-test')
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise ConfigError('workdir', workdir, f'cannot be written ({e.strerror})') from None
  wanted = _as_json(config)
  path = os.path.join(workdir, CONFIG_JSON)
  try:
    with open(path, encoding='utf-8') as f:
      existing = json.load(f)
  except (OSError, ValueError):
    existing = None
  if existing == wanted:
    return True
  if _holds_results(workdir):
    if existing is None:
      raise ConfigError('workdir', workdir, 'holds results of an earlier run but no readable '
                        f'{CONFIG_JSON}; pass a new --workdir')
    raise ConfigError('workdir', workdir, 'holds the results of a different config ('
                      f'{_first_difference(existing, wanted)}); pass a new --workdir, or '
                      'the same config to resume')
  report.atomic_write_json(path, config.to_dict())
  return False


def plan(config: ml_collections.ConfigDict) -> list[tuple[str, train.Runner]]:
  """Validates the whole comparison before anything trains.

  Returns [(variant name, its Runner)], loading each distinct data config once and
  building and tracing every variant's training program, so that a bad value in the last
  variant fails in a second, not after the first variants have trained.
  """
  defaults = schema.default_config()
  schema.check_types(config, defaults)
  _check_top_level(config)
  if config.train.vectorize not in sweep.VECTORIZE_MODES:
    raise ConfigError('train.vectorize', config.train.vectorize,
                      f'one of {", ".join(sweep.VECTORIZE_MODES)}')
  datasets: dict[str, Dataset] = {}
  out = []
  for name in variants.names(config):
    vcfg = variants.variant_config(config, name)
    try:
      schema.check_types(vcfg, defaults)
    except ConfigError as e:  # The base passed: the bad value is this variant's.
      raise ConfigError(f'variants.{name}.{e.field}', e.value, e.allowed) from None
    _check_top_level(vcfg)
    key = json.dumps(vcfg.data.to_dict(), sort_keys=True)
    if key not in datasets:
      datasets[key] = load_dataset(vcfg.data)
    runner = train.Runner(vcfg, datasets[key])
    runner.trace()
    out.append((name, runner))
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


def _stopped(guard: checkpointing.PreemptionGuard, workdir: str, where: str, log: Log
             ) -> checkpointing.Preempted:
  """Logs the one line that says how to resume; returns the exception to raise."""
  line = (f'regjax: stopped by {checkpointing.signal_name(guard.signum)} {where}; finished '
          f'runs are kept. Resume with the same command and --workdir={workdir}')
  log(line)
  return checkpointing.Preempted(guard.signum, line)


def _train_run(name: str, runner: train.Runner, index: int, workdir: str,
               interval_s: float | None,
               guard: checkpointing.PreemptionGuard, log: Log
               ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Trains (or finishes) one (variant, seed) run; records it as finished."""
  seed, seeds = runner.config.seed + index, runner.config.seeds
  directory = checkpointing.run_dir(workdir, name, seed)
  prefix = f'  [{name} seed {index + 1}/{seeds}] '
  ckpt = (None if interval_s is None else checkpointing.RunCheckpoints(
      directory, interval_s, log=lambda line: log(prefix + line)))
  with ckpt or contextlib.nullcontext():
    try:
      record, rows, _ = runner.fit(seed, on_epoch=_progress(name, index, seeds, log),
                                   checkpoints=ckpt, stop_requested=lambda: guard.requested)
    except checkpointing.Interrupted as e:
      kept = 'checkpointed' if ckpt else 'not checkpointed (checkpoints are off)'
      raise _stopped(guard, workdir, f'in {name} seed {seed}, {kept} after '
                     f'{e.epochs_done} epochs', log) from None
    if ckpt:
      ckpt.keep_only_latest()
  record = {'variant': name, **record}
  checkpointing.write_result(directory, record, rows)
  return record, rows


def _outcome(record: dict[str, Any]) -> str:
  if record['diverged']:
    return (f"DIVERGED at epoch {record.get('diverged_epoch')} (non-finite "
            f"{record.get('diverged_metric') or 'loss'}); left out of the comparison")
  return (f"test_acc {100 * record['test_accuracy']:.2f}%, best epoch "
          f"{record['best_epoch']}, stopped at {record['stop_epoch']} "
          f"({record['stop_reason']})")


def _rebuild_metrics(path: str, runs: list[tuple[str, train.Runner, int]],
                     finished: list[Any]) -> int:
  """Rewrites metrics.jsonl (atomically) from the finished runs that precede the first
  unfinished one, and returns how many runs that is.

  The finished-run files are the truth and metrics.jsonl is derived from them: rows of a
  run that was cut short vanish, and appending the later runs in run order makes the
  file what an uninterrupted run writes, without duplicate or missing rows.
  """
  prefix = next((k for k, f in enumerate(finished) if f is None), len(runs))
  lines = [{'variant': runs[k][0], 'seed': record['seed'], **row}
           for k, (record, rows) in enumerate(finished[:prefix]) for row in rows]
  report.atomic_write_text(path, ''.join(
      json.dumps(report.to_jsonable(line), allow_nan=False) + '\n' for line in lines))
  return prefix


def _train_vectorized(runs: list[tuple[str, train.Runner, int]], finished: list[Any],
                      workdir: str, mode: str, guard: checkpointing.PreemptionGuard,
                      log: Log) -> set[int]:
  """Trains the unfinished runs that `sweep.should_vectorize` groups, one program a group.

  Fills `finished[k]` for each run trained here, records it like any finished run, and
  returns those indices k. Sweeps keep no checkpoints: an interrupted sweep starts over.
  """
  pending = [k for k, f in enumerate(finished) if f is None]
  done = set()
  for group in sweep.vectorizable_groups([runs[k][1].config for k in pending]):
    ks = [pending[j] for j in group]
    if not sweep.should_vectorize([runs[k][1].config for k in ks], mode):
      continue
    members = [(runs[k][1].config, runs[k][1].config.seed + runs[k][2]) for k in ks]
    progress = [_progress(runs[k][0], runs[k][2], runs[k][1].config.seeds, log) for k in ks]
    log(f'Training {len(ks)} runs as one vmapped program (train.vectorize={mode!r})')
    try:
      results = sweep.fit_many(members, runs[ks[0]][1].data,
                               on_epoch=lambda j, row: progress[j](row),
                               stop_requested=lambda: guard.requested)
    except sweep.Interrupted as e:
      raise _stopped(guard, workdir, f'in a sweep of {len(ks)} runs after {e.epochs_done} '
                     'epochs (sweeps are not checkpointed)', log) from None
    for k, (_, seed), (record, rows, _) in zip(ks, members, results):
      record = {'variant': runs[k][0], **record}
      checkpointing.write_result(checkpointing.run_dir(workdir, runs[k][0], seed), record, rows)
      finished[k] = (record, rows)
      done.add(k)
  return done


def run(config: ml_collections.ConfigDict, workdir: str, log: Log = _stderr,
        checkpoint_every_s: float | None = checkpointing.DEFAULT_INTERVAL_S
        ) -> dict[str, Any]:
  """Runs (or resumes) the comparison of `config` and writes its outputs into `workdir`.

  Args:
    config: a full config with `variants` (regjax/schema.py, configs/*.py).
    workdir: output folder: new, or one this same config wrote before (resumed).
    log: receives one progress line at a time (default: stderr).
    checkpoint_every_s: least seconds of training between two checkpoints of a run
      (regjax/checkpointing.py); 0 = after every epoch whose previous save has been
      written; None = no checkpoints (finished runs are still recorded and not rerun;
      an unfinished one starts over). It does not change any result.
  Returns:
    {'rows': summary rows (report.summarize), 'records': one per (variant, seed),
     'table': the text table, 'paths': the files written}.
  Raises:
    ConfigError: bad input, or a workdir holding a different config's results.
    checkpointing.Preempted: on SIGTERM / SIGINT, after checkpointing.
  """
  if checkpoint_every_s is not None and not (
      isinstance(checkpoint_every_s, (int, float)) and checkpoint_every_s >= 0):
    raise ConfigError('checkpoint_every_s', checkpoint_every_s, 'must be >= 0 or None')
  with checkpointing.PreemptionGuard() as guard:
    jobs = plan(config)
    prepare_workdir(workdir, config)
    env = parallel.environment()
    log(f"Computing on {env['devices']} x {env['device_kind']} ({env['backend']}), JAX "
        f"{env['jax']}, matmul precision {env['matmul_precision'] or 'JAX default'}")
    # One run per (variant, seed index), in table order.
    runs = [(name, runner, i) for name, runner in jobs for i in range(runner.config.seeds)]
    finished = [checkpointing.read_result(checkpointing.run_dir(
        workdir, name, runner.config.seed + i)) for name, runner, i in runs]
    metrics_path = os.path.join(workdir, report.METRICS_JSONL)
    prefix = _rebuild_metrics(metrics_path, runs, finished)

    records, history = [], []
    t_start = time.perf_counter()
    vectorized = _train_vectorized(runs, finished, workdir, config.train.vectorize, guard, log)
    trained, to_train = 0, finished.count(None)
    with report.MetricsWriter(metrics_path) as metrics:
      for k, (name, runner, i) in enumerate(runs):
        seed = runner.config.seed + i
        if finished[k] is not None:
          record, rows = finished[k]
          status = 'in the vmapped sweep' if k in vectorized else 'done earlier'
        else:
          if guard.requested:
            raise _stopped(guard, workdir, f'before {name} seed {seed}', log)
          record, rows = _train_run(name, runner, i, workdir, checkpoint_every_s, guard,
                                    log)
          trained += 1
          elapsed = time.perf_counter() - t_start
          status = (f'{elapsed:.0f} s elapsed, about '
                    f'{elapsed / trained * (to_train - trained):.0f} s left')
        rows = [{'variant': name, 'seed': seed, **row} for row in rows]
        if k >= prefix:
          metrics.write_all(rows)
        records.append(record)
        history.extend(rows)
        log(f'[{k + 1}/{len(runs)}] {name} seed {seed}: {_outcome(record)}; {status}')

  baseline = jobs[0][0]
  rows = report.summarize(records, baseline=baseline)
  table = report.format_table(rows, baseline=baseline)
  paths = report.write_results(workdir, rows, records, environment=env)
  curves = os.path.join(workdir, 'curves.png')
  report.plot_curves(history, curves)
  paths['curves'] = curves
  return {'rows': rows, 'records': records, 'table': table, 'paths': paths}
