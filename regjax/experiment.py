"""`run(config, workdir)`: train every variant over every seed, then report the comparison.

This is what `python -m regjax.main` calls and what tests call. Each (variant, seed) is
trained with early stopping on the validation split and tested once on its restored
best weights (regjax/train.py). The same seed gives every variant the same
initialization key, data order and dropout keys, so per-seed differences are paired.

Runs are grouped into programs (regjax/train.py): one run each, or, per
`train.vectorize`, every run that can share a vmapped program (regjax/sweep.py).

The workdir belongs to one config (layout: regjax/workdir.py). It receives config.json
first; per program, orbax checkpoints while it trains (deleted when it ends); per run, a
finished-run file and its reported weights as soon as it stops; metrics.jsonl as runs
finish; and at the end results.json, results.csv and curves.png. Every results file is
written atomically: a results file that exists is complete.

Resuming: running the same config into the same workdir again skips finished runs
(their records are read back), continues an unfinished program from its last
checkpoint, and gives bit-for-bit the numbers of an uninterrupted run (wall-clock
seconds aside). A workdir that holds results of a different config is refused. SIGTERM
and Ctrl-C checkpoint the current program and stop with status 143 / 130
(`checkpointing.Preempted`).
"""

import contextlib
import json
import os
import sys
import time
from typing import Any, Callable

import jax
import ml_collections

from regjax import checkpointing
from regjax import parallel
from regjax import report
from regjax import schema
from regjax import sweep
from regjax import train
from regjax import variants
from regjax import workdir as workdir_lib
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
          or workdir_lib.holds_results(workdir))


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict,
                    write: bool = True) -> bool:
  """Creates `workdir` and claims it for `config`; returns whether it resumes.

  A workdir whose config.json equals `config` is resumed (True). A workdir with results
  (results.json, metrics or checkpoints) of a different config, or of an unknown one
  (no readable config.json), is refused with a one-line ConfigError, so an earlier
  comparison is never overwritten. Otherwise config.json is (re)written (False). With
  write=False (a process that only trains) the same checks run and nothing is written.
  """
  if os.path.isfile(workdir):
    raise ConfigError('workdir', workdir, 'is a file; pass a folder (new, or one this '
                      'config wrote before)')
  if write:
    try:
      os.makedirs(workdir, exist_ok=True)
      probe = os.path.join(workdir, f'.write-test-{os.getpid()}')
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
  if write:
    report.atomic_write_json(path, config.to_dict())
  return False


def plan(config: ml_collections.ConfigDict) -> list[tuple[str, ml_collections.ConfigDict,
                                                      Dataset]]:
  """Validates the comparison's configs and loads its data, before anything trains.

  Returns [(variant name, its full config, its dataset)] in table order, loading each
  distinct data config once.
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
    out.append((name, vcfg, datasets[key]))
  return out


def make_groups(runs: list[tuple[str, train.Run]], mode: str) -> list[list[int]]:
  """Indices of `runs` grouped into programs: runs that can share one vmapped program
  when `sweep.should_vectorize` says so for them, else one run per program."""
  groups = []
  for group in sweep.vectorizable_groups([r.config for _, r in runs]):
    if sweep.should_vectorize([runs[k][1].config for k in group], mode):
      groups.append(group)
    else:
      groups += [[k] for k in group]
  return sorted(groups)


def _progress(name: str, seed: int, log: Log, every: int = 10
              ) -> Callable[[dict[str, float]], None]:
  def on_epoch(row):
    if row['epoch'] % every == 0:
      val = (f"val_acc {100 * row['val_accuracy']:6.2f}%  val_loss {row['val_loss']:.4f}"
             if 'val_accuracy' in row else '')
      log(f"  [{name} seed {seed}] epoch {row['epoch']:3d}  "
          f"train_loss {row['train_loss']:.4f}  {val}  ({row['seconds']:.3f} s)")
  return on_epoch


def _stopped(guard: checkpointing.PreemptionGuard, workdir: str, where: str, log: Log
             ) -> checkpointing.Preempted:
  """Logs the one line that says how to resume; returns the exception to raise."""
  line = (f'regjax: stopped by {checkpointing.signal_name(guard.signum)} {where}; finished '
          f'runs are kept. Resume with the same command and --workdir={workdir}')
  log(line)
  return checkpointing.Preempted(guard.signum, line)


def _outcome(record: dict[str, Any]) -> str:
  if record['diverged']:
    return (f"DIVERGED at epoch {record.get('diverged_epoch')} (non-finite "
            f"{record.get('diverged_metric') or 'loss'}); left out of the comparison")
  return (f"test_acc {100 * record['test_accuracy']:.2f}%, best epoch "
          f"{record['best_epoch']}, stopped at {record['stop_epoch']} "
          f"({record['stop_reason']})")


def _metrics_lines(name: str, record: dict[str, Any], rows: list[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
  return [{'variant': name, 'seed': record['seed'], **row} for row in rows]


def _rebuild_metrics(path: str | None, names: list[str], finished: list[Any]) -> int:
  """Rewrites metrics.jsonl (atomically) from the finished runs that precede the first
  unfinished one, and returns how many runs that is.

  The finished-run files are the truth and metrics.jsonl is derived from them: rows of a
  run that was cut short vanish, and appending the later runs in run order makes the
  file what an uninterrupted run writes, without duplicate or missing rows.
  """
  prefix = next((k for k, f in enumerate(finished) if f is None), len(finished))
  if path is None:  # Not the writing process.
    return prefix
  lines = [line for k in range(prefix)
           for line in _metrics_lines(names[k], *finished[k])]
  report.atomic_write_text(path, ''.join(
      json.dumps(report.to_jsonable(line), allow_nan=False) + '\n' for line in lines))
  return prefix


def run(config: ml_collections.ConfigDict, workdir: str, log: Log = _stderr,
        checkpoint_every_s: float | None = checkpointing.DEFAULT_INTERVAL_S
        ) -> dict[str, Any]:
  """Runs (or resumes) the comparison of `config` and writes its outputs into `workdir`.

  Args:
    config: a full config with `variants` (regjax/schema.py, configs/*.py).
    workdir: output folder: new, or one this same config wrote before (resumed).
    log: receives one progress line at a time (default: stderr).
    checkpoint_every_s: least seconds of training between two checkpoints of a program
      (regjax/checkpointing.py); 0 = after every epoch whose previous save has been
      written; None = no checkpoints (finished runs are still recorded and not rerun;
      unfinished ones start over). It does not change any result.
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
    # One run per (variant, replicate), in table order; replicate i uses seed + i.
    runs = [(name, train.Run(vcfg, vcfg.seed + i, data))
            for name, vcfg, data in jobs for i in range(vcfg.seeds)]
    names = [name for name, _ in runs]
    groups = [(g, train.RunGroup([runs[k][1] for k in g]))
              for g in make_groups(runs, config.train.vectorize)]
    for _, group in groups:
      group.trace()  # A bad value in the last group fails now, not after the first.
    # With several processes (jax.distributed) every process trains, process 0 writes.
    writer = jax.process_index() == 0
    if not writer:
      log = lambda line: None
    prepare_workdir(workdir, config, write=writer)
    env = parallel.environment()
    log(f"Computing on {env['devices']} x {env['device_kind']} ({env['backend']}), JAX "
        f"{env['jax']}, matmul precision {env['matmul_precision'] or 'JAX default'}")
    log(f"{len(runs)} runs as {len(groups)} program{'s' if len(groups) != 1 else ''} "
        f"(train.vectorize={config.train.vectorize!r}); each: "
        f"{'; '.join(dict.fromkeys(group.describe_placement() for _, group in groups))}")
    run_dirs = [workdir_lib.run_dir(workdir, name, r.seed) for name, r in runs]
    finished = [workdir_lib.read_result(d) for d in run_dirs]
    metrics_path = os.path.join(workdir, report.METRICS_JSONL)
    written = _rebuild_metrics(metrics_path if writer else None, names, finished)
    t_start = time.perf_counter()
    to_train, trained = finished.count(None), 0

    with (report.MetricsWriter(metrics_path) if writer
          else contextlib.nullcontext()) as metrics:
      def done(k: int, record: dict[str, Any], rows: list[dict[str, Any]],
               variables: dict[str, Any] | None, status: str) -> None:
        nonlocal written
        # run_dir: where its files are, relative to the workdir (regjax/workdir.py).
        record = {'variant': names[k], **record,
                  'run_dir': os.path.relpath(run_dirs[k], workdir)}
        finished[k] = (record, rows)
        if not writer:
          return
        if variables is not None:
          workdir_lib.save_variables(run_dirs[k], variables)
        workdir_lib.write_result(run_dirs[k], record, rows)
        while written < len(runs) and finished[written] is not None:
          metrics.write_all(_metrics_lines(names[written], *finished[written]))
          written += 1
        log(f'[{k + 1}/{len(runs)}] {names[k]} seed {runs[k][1].seed}: '
            f'{_outcome(record)}; {status}')

      for ks, group in groups:
        if all(finished[k] is not None for k in ks):
          for k in ks:
            log(f'[{k + 1}/{len(runs)}] {names[k]} seed {runs[k][1].seed}: '
                f'{_outcome(finished[k][0])}; done earlier')
          continue
        if guard.requested:
          raise _stopped(guard, workdir, f'before {names[ks[0]]} seed {runs[ks[0]][1].seed}',
                         log)
        where = workdir_lib.checkpoint_dir(workdir, [(names[k], runs[k][1].seed) for k in ks])
        label = (f'{names[ks[0]]} seed {runs[ks[0]][1].seed}' if len(ks) == 1
                 else f'a program of {len(ks)} runs')
        prefix = f'  [{label}] '
        ckpt = (None if checkpoint_every_s is None else checkpointing.Checkpoints(
            where, checkpoint_every_s, log=lambda line: log(prefix + line)))
        progress = [_progress(names[k], runs[k][1].seed, log) for k in ks]

        def on_done(j: int, result: Any) -> None:
          nonlocal trained
          trained += 1
          elapsed = time.perf_counter() - t_start
          left = elapsed / trained * max(to_train - trained, 0)
          done(ks[j], *result, f'{elapsed:.0f} s elapsed, about {left:.0f} s left')

        with ckpt or contextlib.nullcontext():
          try:
            group.fit(on_epoch=lambda j, row: progress[j](row), on_done=on_done,
                      checkpoints=ckpt, stop_requested=lambda: guard.requested)
          except checkpointing.Interrupted as e:
            kept = 'checkpointed' if ckpt else 'not checkpointed (checkpoints are off)'
            raise _stopped(guard, workdir, f'in {label}, {kept} after {e.epochs_done} '
                           'epochs', log) from None
        if writer:
          workdir_lib.remove_checkpoints(workdir, where)

  records = [f[0] for f in finished]
  history = [line for k, f in enumerate(finished) for line in _metrics_lines(names[k], *f)]
  baseline = jobs[0][0]
  rows = report.summarize(records, baseline=baseline)
  table = report.format_table(rows, baseline=baseline)
  paths = {}
  if writer:
    paths = report.write_results(workdir, rows, records, environment=env)
    curves = os.path.join(workdir, 'curves.png')
    report.plot_curves(history, curves)
    paths['curves'] = curves
  return {'rows': rows, 'records': records, 'table': table, 'paths': paths}
