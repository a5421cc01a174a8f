"""`dendsn`: train, eval, simulate, list.

    dendsn train [KEY=VALUE ...] [-m] [--help] [--cfg job]   Hydra app: one run, or a sweep with -m
    dendsn eval ckpt=PATH [KEY=VALUE ...]                     test accuracy and loss of a checkpoint
    dendsn simulate [KEY=VALUE ...] [-m] [--help]             drive a neuron with a stimulus: f-I curve (simulate.py)
    dendsn list [GROUP]                                       config groups and their options

Every user mistake ends here as one line on stderr and a non-zero exit (2 for bad input, 130 for an
interrupted run), never a traceback. Before Hydra starts a run, the overrides are composed and
validated once (every job of a sweep), so a typo fails before any work. A sweep ends with a table of
its jobs, best validation accuracy first (`sweep.py`).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from . import rundir, sweep
from . import distributed
from .errors import UserError, shorten

sweep.register_resolvers()   # ${dendsn.job_dir:...} names sweep job dirs, also in launcher workers

USAGE = """usage: dendsn <command> [args]

commands:
  train [KEY=VALUE ...]        train a network (add -m for a sweep, --help for groups and keys)
  eval ckpt=PATH [KEY=VALUE]   evaluate a checkpoint on the test split
  simulate [KEY=VALUE ...]     drive a neuron with a stimulus, no training: f-I curve, traces (--help)
  list [GROUP]                 config groups and their options
  torchrun [OPTIONS] train ... one training on several processes / GPUs / machines (torchrun's options)

examples:
  dendsn train
  dendsn train dataset=fashion_mnist neuron=plif epochs=5
  dendsn train -m neuron=lif,if seed=0,1
  dendsn train -m hydra/sweeper=optuna 'optim.lr=interval(0.001,0.03)' neuron=lif,dend_lif
  dendsn eval ckpt=outputs/2026-01-01/12-00-00/checkpoints/best.pt
  dendsn simulate neuron=dend_lif stimulus=poisson
  dendsn torchrun --nproc_per_node=4 train network=conv dataset=fashion_mnist
  dendsn train -m hydra/launcher=submitit_slurm hydra.launcher.partition=gpu seed=0,1,2"""

FAILED_JOBS: list[str] = []


def fail(message: str, code: int = 2) -> None:
    from .distributed import env_world

    rank = env_world()[0]
    if rank == 0:                         # under torchrun, rank 0 says it; the other ranks exit quietly
        print(f"dendsn: error: {message}", file=sys.stderr)
    elif code == 1:                       # ... unless it is their own failure (rank 0 cannot know it)
        print(f"dendsn: error: rank {rank}: {message}", file=sys.stderr)
    else:                                 # the same refusal as rank 0's: let rank 0 end first and say it (torchrun
        import time                       # stops every process as soon as one has ended)

        time.sleep(5.0)
    sys.exit(code)


# ---------------------------------------------------------------- list
def _groups() -> dict[str, list[tuple[str, str]]]:
    """Every config group (nested ones as 'neuron/soma') -> [(option, its description)]: the first
    comment line of the option's file, or of the option it reuses (``/group@_here_: option``)."""
    root = resources.files("dendsn_conf")

    def describe(f) -> str:
        lines = f.read_text().splitlines()
        comments = [ln for ln in lines if ln.startswith("#") and "@package" not in ln]
        if comments:
            return comments[0].lstrip("# ").strip()
        reused = [ln.split("@_here_:") for ln in lines if "@_here_:" in ln]
        if reused:
            group, option = reused[0][0].strip(" -/"), reused[0][1].strip()
            target = root.joinpath(*group.split("/"), f"{option}.yaml")
            return describe(target) if target.is_file() else ""
        return ""

    out: dict[str, list[tuple[str, str]]] = {}

    def walk(folder, name: str) -> None:
        options = [(f.name[:-5], describe(f)) for f in sorted(folder.iterdir(), key=lambda p: p.name)
                   if f.name.endswith(".yaml")]
        if options:
            out[name] = options
        for sub in sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("_")), key=lambda p: p.name):
            walk(sub, f"{name}/{sub.name}")

    for group in sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "hydra"))):
        walk(root.joinpath(group), group)
    return out


def list_command(args: list[str]) -> None:
    groups = _groups()
    if args:
        unknown = [a for a in args if a not in groups]
        if unknown:
            fail(f"no config group {unknown[0]!r}; groups: {', '.join(groups)}")
        groups = {a: groups[a] for a in args}
    defaults = _default_choices()
    for group, options in groups.items():
        print(f"{group}:")
        for name, desc in options:
            mark = "*" if defaults.get(group) == name else " "
            print(f"  {mark} {name:<18} {desc}")
    print("(* = default)")


def _default_choices() -> dict:
    from .config import compose

    cfg = compose([], return_hydra_config=True)
    return dict(cfg.hydra.runtime.choices)


# ---------------------------------------------------------------- validation before Hydra
def _split_args(args: list[str]):
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):       # argparse's usage text and error: one line instead
            ns = parser.parse_args(args)
    except SystemExit:
        why = [ln.split("error:", 1)[1].strip() for ln in said.getvalue().splitlines() if "error:" in ln]
        fail(f"could not parse the arguments{': ' + shorten(why[-1], 80) if why else ''}; see `dendsn train --help`")
    if ns.multirun and (ns.cfg or ns.info or ns.shell_completion):
        fail("--cfg / --info show one run's config: drop -m to print it (every job of the sweep shares it, with its "
             "own swept values)")
    return ns


def _quoted(value: str) -> str:
    """``value`` as an override value: quoted where it holds what the override grammar reads, like the
    '=' and ',' of a sweep job dir (`0_neuron=lif,seed=0`)."""
    if re.fullmatch(r"[\w./\-+@]+", value):
        return value
    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)   # backslashes before a quote / the end
    return "'" + value.replace("'", "\\'").replace("${", "\\${") + "'"


def _value_of(overrides: list[str], key: str) -> str | None:
    """The (unquoted) value of ``key=...`` among ``overrides``, or None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    line = next((o for o in overrides if o.startswith(f"{key}=")), None)
    if line is None:
        return None
    try:
        return str(OverridesParser.create().parse_override(line).value())
    except Exception:
        return line.split("=", 1)[1]


def _resume_overrides(overrides: list[str]) -> list[str]:
    """For resume=PATH: the checkpoint's own overrides, then the user's, in the original run dir."""
    from . import checkpoint

    value = next((o.split("=", 1)[1] for o in overrides if o.startswith("resume=")), None)
    if value is None or value.strip() == "null":
        return overrides
    if value.strip() in ("", "''", '""'):
        raise UserError("resume= is empty (an unset shell variable?): give the run dir or checkpoint to continue, "
                        "e.g. resume=outputs/2026-01-01/12-00-00, or leave resume out for a new run")
    path = checkpoint.find(value, "resume")
    ck = checkpoint.load(path, "resume")
    user = [o for o in overrides if not o.startswith("resume=")]
    merged = checkpoint.check_overrides(ck["overrides"], user, path, "resume") + [f"resume={_quoted(str(path))}"]
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if (run_dir / ".hydra").is_dir() and not any(o.startswith("hydra.run.dir=") for o in merged):
        merged.append(f"hydra.run.dir={_quoted(str(run_dir))}")
    return merged


def prevalidate(ns) -> tuple[list[str], Any]:
    """The overrides to run, after checking every job; for a sweep, plus the setting that names each
    job dir by the keys that differ between the jobs (the keys all jobs share are left out). For one
    run, also its composed config (with hydra.*, for its run dir); None for a sweep."""
    from .config import check_sweep, compose, validate

    overrides = _resume_overrides(list(ns.overrides))
    if not ns.multirun:
        cfg = compose(overrides, return_hydra_config=True)
        validate(cfg)
        return overrides, cfg
    check = check_sweep(overrides)
    overrides = check.overrides
    if not any(o.startswith("hydra.job.config.override_dirname.exclude_keys=") for o in overrides):
        keys = sorted(set(check.exclude_keys) | set(sweep.constant_keys(overrides)))
        if keys:
            overrides.append(f"hydra.job.config.override_dirname.exclude_keys=[{','.join(map(_quoted, keys))}]")
    return overrides, None


# ---------------------------------------------------------------- train (Hydra app)
def _task(cfg) -> Any:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .train import train

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    if distributed.active():            # every rank's Hydra has made the run dir: a refused run removes it after
        distributed.barrier()
    overrides = [o for o in hc.overrides.task if not o.startswith(("resume=", "hydra."))]
    if multirun:
        try:                                                   # launchers may run jobs in other processes; a
            rundir.lock_dir(run_dir, "hydra.sweep.subdir")     # job dir in use is not this job's to mark
        except UserError as e:
            print(f"dendsn: job {hc.job.num} not run: {e}", file=sys.stderr)
            return _failed_objective(hc, run_dir)
    try:
        if multirun:
            done = _earlier_job(cfg, run_dir, hc.job.num)
            if done is not None:                               # a re-run sweep: this job completed before
                return sweep.objective(done)
        result = train(cfg, run_dir, overrides, dict(hc.runtime.choices))
    except Exception as e:
        if os.environ.get("DENDSN_DEBUG") and not isinstance(e, UserError):
            raise
        message, code = describe(e, cfg)
        if not multirun:
            fail(message, code)
        (run_dir / "error.txt").write_text(message + "\n")
        if code == 130:                                  # Ctrl-C / SIGTERM stops the whole sweep, not one job
            raise SweepInterrupted(run_dir, hc.job.num, "stopped") from None
        print(f"dendsn: job {hc.job.num} failed: {message}", file=sys.stderr)
        return _failed_objective(hc, run_dir)
    if multirun:
        from .train import STOP

        if STOP.requested:                               # asked to stop while the job's last epoch finished
            raise SweepInterrupted(run_dir, hc.job.num, "finished")
        return sweep.objective(result)
    return result


SWEEP_OVERRIDES: list[str] = []   # the sweep's own overrides (for the table of an interrupted sweep)


def _earlier_job(cfg, run_dir: Path, num) -> dict | None:
    """A sweep run again into its own dir: a job that completed before is kept (its metrics, returned here,
    stand for it), one that was interrupted resumes from its last.pt (``cfg.resume`` is set), and one that
    failed or never started trains from the start. None: train this job."""
    from omegaconf import open_dict

    saved = sweep._read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").exists() else {}
    last = run_dir / "checkpoints" / "last.pt"
    if saved.get("status") != "completed" and last.exists():
        from . import checkpoint

        try:
            ck = checkpoint.load(last, "resume")
        except UserError:
            ck = {}
        if ck.get("batch") == 0 and isinstance(ck.get("epoch"), int) and ck["epoch"] >= int(cfg.epochs) and ck.get("history"):
            history = ck["history"]                           # stopped between its last save and its record
            saved = {**saved, "status": "completed", "epochs_completed": len(history), "final": history[-1],
                     "best": ck.get("best", {}), "history": history}
            (run_dir / "metrics.json").write_text(json.dumps(saved, indent=2))
    if saved.get("status") == "completed":
        (run_dir / "error.txt").unlink(missing_ok=True)
        print(f"dendsn: job {num} ({run_dir.name}) completed before: kept, not trained again", file=sys.stderr)
        return saved
    (run_dir / "error.txt").unlink(missing_ok=True)            # an earlier failure: this attempt decides
    if last.exists() and not cfg.get("resume"):
        with open_dict(cfg):
            cfg.resume = str(run_dir)
        print(f"dendsn: job {num} ({run_dir.name}) resumes from {last}", file=sys.stderr)
    return None


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C / SIGTERM during a sweep: Hydra's launcher must not start the next job (it catches
    Exception from a job, not KeyboardInterrupt). ``how``: "stopped" (the job was interrupted) or
    "finished" (the stop came while the job's last epoch ended, so the job completed)."""

    def __init__(self, job_dir: Path, num: int, how: str):
        super().__init__(str(job_dir))
        self.job_dir, self.num, self.how = Path(job_dir), num, how

    def report(self) -> str:
        """Write the table of the jobs so far; the one line that ends the command."""
        root = self.job_dir.parent
        done, kept = _table_so_far(root)
        if self.how == "finished":
            where = f"after job {self.num}, which finished"
        elif (self.job_dir / "checkpoints" / "last.pt").exists():
            where = f"in job {self.num}"
        else:
            where = f"in job {self.num} before it trained"
        return (f"interrupted: the sweep stopped {where}; {done} finished job(s) are kept{kept}; the jobs after it "
                f"did not start; {_run_again(root)}")


def _table_so_far(root: Path) -> tuple[int, str]:
    """Write (and print) the table of a stopped sweep's jobs so far: (jobs completed, " (table: CSV)" or "")."""
    rows = sweep.collect(root, SWEEP_OVERRIDES) if root.is_dir() else []
    if not rows:
        return 0, ""
    csv_path, _ = sweep.write_results(root, rows, {})
    print(sweep.format_table(rows))
    return sum(r["status"] == "completed" for r in rows), f" (table: {csv_path})"


def _run_again(root: Path) -> str:
    """How to finish a stopped sweep (`_earlier_job` keeps what finished and resumes what stopped)."""
    return (f"run the same command again (with hydra.sweep.dir={_quoted(str(root))}) to finish it: finished jobs are "
            "kept and stopped ones resume from their last.pt")


def _out_of_memory(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    import torch

    text = str(e)
    return (isinstance(e, getattr(torch, "OutOfMemoryError", ()))
            or "can't allocate memory" in text or "out of memory" in text.lower())


def describe(e: BaseException, cfg=None) -> tuple[str, int]:
    """The one line (and exit code) for an exception that ends a command: a user mistake (2), an
    interruption (130), memory (2, naming the keys that set the size), or an internal error (1)."""
    if isinstance(e, UserError):
        return str(e), 130 if str(e).startswith("interrupted") else 2
    if _out_of_memory(e):
        sizes = ""
        if cfg is not None:
            data = cfg.get("dataset") or {}
            extra = [f"dataset.{k}={data[k]}" for k in ("n_train", "n_test", "val") if k in data]
            sizes = f" (now T={cfg.get('T')}, batch_size={cfg.get('batch_size')}{', ' if extra else ''}{', '.join(extra)})"
        return (f"out of memory: the run needs more memory than the device has; lower T, batch_size or the network "
                f"and dataset sizes{sizes}"), 2
    first = (str(e).strip().splitlines() or [""])[0]
    return (f"internal error: {type(e).__name__}: {shorten(first, 300)} "
            "(rerun with DENDSN_DEBUG=1 for the traceback)"), 1


def _failed_objective(hc, run_dir: Path) -> float | None:
    """What a failed sweep job returns: None, which Optuna records as a failed trial. Optuna's sweeper
    ends a study by asking for its best trial, which raises when no trial completed; so the last
    trials of a study in which none completed return the worst value (-inf when maximizing) instead."""
    sweeper = hc.sweeper
    if "optuna" not in str(sweeper.get("_target_", "")) or "n_trials" not in sweeper:
        return None
    if hc.job.num < int(sweeper.n_trials) - max(int(sweeper.get("n_jobs", 1)), 1):
        return None
    for job in sweep.job_dirs(run_dir.parent):
        if job != run_dir and sweep.read_job(job)["status"] == "completed":
            return None
    return math.inf if "minimize" in str(sweeper.get("direction", "")) else -math.inf


class SweepReport:
    """Hydra callback: after a sweep, a table of its jobs (best validation accuracy first), written to
    sweep_results.csv / .json at the sweep root, and the list of the jobs that failed (error.txt)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        root = Path(config.hydra.sweep.dir)
        rows = sweep.collect(root, list(config.hydra.overrides.task))
        study = sweep.optuna_result(root)
        extra = {"optuna": study} if study else {}
        if rows:
            csv_path, json_path = sweep.write_results(root, rows, extra)
            print(sweep.format_table(rows))
            print(f"dendsn: sweep results: {csv_path} and {json_path.name}")
        if study and "best_params" in study:
            value = study.get("best_value")
            if isinstance(value, (int, float)) and math.isfinite(value):
                params = " ".join(f"{k}={v}" for k, v in study["best_params"].items())
                value = f"{value:.2%}" if 0 <= value <= 1 else value
                print(f"dendsn: optuna: best validation accuracy {value} with {params or 'the fixed overrides'}")
            else:
                print("dendsn: optuna: no trial completed")
        failed = [r for r in rows if r["error"] is not None]
        for r in failed:
            FAILED_JOBS.append(f"{root / r['dir']}: {r['error']}")
        ok = sum(r["status"] == "completed" for r in rows)
        print(f"dendsn: sweep finished: {ok} job(s) completed, {len(failed)} failed | {root}", file=sys.stderr)
        for line in FAILED_JOBS:
            print(f"dendsn:   failed {line}", file=sys.stderr)

    def __getattr__(self, name):  # the other Callback hooks do nothing
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)


@contextlib.contextmanager
def _keep_run_record_unless_trained(overrides: list[str]):
    """On resume, Hydra rewrites the run's .hydra/ with the new overrides before the run starts. If the
    resumed run then fails before it saves a checkpoint (say, its overrides change the model), put
    the run's record back as it was: .hydra/ keeps describing what its checkpoints hold."""
    run_dir = _value_of(overrides, "hydra.run.dir")
    record = Path(run_dir) / ".hydra" if run_dir and distributed.env_world()[0] == 0 else None
    if record is None or not record.is_dir() or not any(o.startswith("resume=") for o in overrides):
        yield
        return
    saved = {f: f.read_bytes() for f in record.glob("*.yaml")}
    last = Path(run_dir) / "checkpoints" / "last.pt"
    stamp = last.stat().st_mtime_ns if last.exists() else None
    try:
        yield
    finally:
        if (last.stat().st_mtime_ns if last.exists() else None) == stamp:
            for f, data in saved.items():
                f.write_bytes(data)


# ---------------------------------------------------------------- one run, one directory
def holds_run(path: Path, multirun: bool) -> str | None:
    """What in ``path`` shows an earlier run (or sweep) was there, or None."""
    marks = ["multirun.yaml", "sweep_results.csv"] if multirun else [".hydra", "checkpoints", "metrics.json", "train.log"]
    found = next((m for m in marks if (path / m).exists()), None)
    if found is None and multirun and path.is_dir():
        found = next((c.name for c in sorted(path.iterdir()) if c.is_dir() and (c / ".hydra").is_dir()), None)
    return found


def _make_dir(path: Path, key: str, fresh: bool) -> tuple[Path, Path | None]:
    """Create ``path``; return it and the topmost directory this call created (None when it existed).
    ``fresh``: it must be new; when it exists, the first free ``path_1``, ``path_2``, ... (mkdir is
    atomic: two runs started in the same second get two dirs)."""
    candidate, n = path, 0
    while True:
        try:
            top = next((p for p in reversed([candidate, *candidate.parents]) if not p.exists()), None)
            candidate.mkdir(parents=True)
        except FileExistsError as e:
            if not candidate.is_dir():
                raise rundir.dir_problem(candidate, key, e) from None
            if fresh:
                n += 1
                candidate = path.with_name(f"{path.name}_{n}")
                continue
            top = None
        except OSError as e:
            raise rundir.dir_problem(candidate, key, e) from None
        if not os.access(candidate, os.W_OK | os.X_OK):
            raise rundir.dir_problem(candidate, key, PermissionError(errno.EACCES, "permission denied"))
        return candidate, top


CREATED_DIR: Path | None = None   # the run dir this command made (removed again if the run is refused)
CREATED_TOP: Path | None = None   # ... and the topmost of the directories it made for it (outputs/<date>/)


def _drop_refused_run(code) -> None:
    """A run refused before it trained (bad input, exit 2) leaves no directory behind, when this command
    made that directory: nothing in it but Hydra's record of the refused config and the lock."""
    d = CREATED_DIR.resolve() if CREATED_DIR is not None else None
    if code != 2 or d is None or not d.is_dir():
        return
    if any((d / m).exists() for m in ("checkpoints", "metrics.json")) or any(p.is_dir() and (p / ".hydra").is_dir() for p in d.iterdir()):
        return
    import shutil

    shutil.rmtree(d, ignore_errors=True)
    top = CREATED_TOP.resolve() if CREATED_TOP is not None else d
    for parent in d.parents:                        # the parents this command made (outputs/<date>/), if empty
        if top not in (parent, *parent.parents) or not parent.is_dir() or any(parent.iterdir()):
            break
        try:
            parent.rmdir()
        except OSError:
            break


def claim_dir(overrides: list[str], multirun: bool, cfg=None) -> list[str]:
    """Make the run (or sweep) dir, refuse one that holds another run unless this is a resume, lock it,
    and name it in the overrides (so Hydra does not compute a second, later time stamp). ``cfg``: the
    run's config composed with hydra.* (`prevalidate`), or None to compose the hydra.* overrides."""
    from .config import compose

    global CREATED_DIR, CREATED_TOP
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = _value_of(overrides, key)
    resume = _value_of(overrides, "resume") not in (None, "null", "None")
    if given is None:
        if cfg is None:
            cfg = compose([o for o in overrides if o.lstrip("+~").startswith("hydra.")], return_hydra_config=True)
        path = Path(str(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir))
        path, made = _make_dir(path, key, fresh=not resume)
        CREATED_DIR, CREATED_TOP = (path, made) if made else (None, None)
    else:
        if not given.strip():
            raise UserError(f"{key}= is empty; give a directory, or leave {key} out for a fresh one under outputs/")
        path, made = _make_dir(Path(given), key, fresh=False)
        CREATED_DIR, CREATED_TOP = (path, made) if made and not resume else (None, None)
        found = None if resume else holds_run(path, multirun)
        if found and multirun and _same_sweep(path, overrides):
            print(f"dendsn: {shorten(path)} holds this sweep: completed jobs are kept, interrupted ones resume from "
                  "their last.pt, the others train", file=sys.stderr)
            found = None
        if found:
            what = "sweep" if multirun else "run"
            hint = ("a different one (only the same -m command, basic sweeper, continues it); " if multirun
                    else f"continue it with: dendsn train resume={_quoted(str(path))}, or ")
            raise UserError(f"{key}={shorten(path)} already holds a {what} ({found}); nothing there was changed; "
                            f"{hint}choose another {key}")
    rundir.lock_dir(path, key)
    if given is None:
        overrides = [*overrides, f"{key}={_quoted(str(path))}"]
    return overrides


SAME_SWEEP_IGNORES = ("progress", "profile", "resume", "ckpt")   # keys that do not change what a job learns


def _same_sweep(path: Path, overrides: list[str]) -> bool:
    """Does the sweep dir ``path`` hold the sweep of these overrides (the same -m command: the same task
    overrides, launcher aside), run by the basic sweeper (an Optuna study draws new trials each time)?"""
    from omegaconf import OmegaConf

    try:
        saved = OmegaConf.load(path / "multirun.yaml")
        task = list(saved.hydra.overrides.task)
        sweeper = str(saved.hydra.sweeper.get("_target_", ""))
    except Exception:
        return False
    if "optuna" in sweeper.lower() or any(o.startswith("hydra/sweeper=") for o in overrides):
        return False

    def key_set(items):
        return sorted(o for o in items if not o.lstrip("+~").startswith(("hydra.", "hydra/"))
                      and o.split("=", 1)[0].lstrip("+~") not in SAME_SWEEP_IGNORES)

    return key_set(task) == key_set(overrides)


def train_command(args: list[str]) -> None:
    import hydra

    from . import config  # noqa: F401  (registers the schema in Hydra's ConfigStore)

    ns = _split_args(args)
    if ns.help:
        print(train_help())
        return
    # --cfg / --resolve print the config a run would use: the same checks (and one-line errors) as a run
    informational = ns.hydra_help or ns.info or ns.shell_completion
    overrides = list(ns.overrides)
    printing = ns.cfg or ns.resolve or ns.package
    if not informational:
        try:
            if ns.multirun and distributed.wanted():
                raise UserError("torchrun starts one training on several processes, and -m is a sweep: run a sweep "
                                "without torchrun (spread its jobs with hydra/launcher=submitit_slurm or ray), or "
                                "one training under torchrun")
            overrides, cfg = prevalidate(ns)
            if not printing:
                if distributed.wanted():
                    overrides = _claim_dir_once(overrides, cfg)
                else:
                    overrides = claim_dir(overrides, ns.multirun, cfg)
                SWEEP_OVERRIDES[:] = list(ns.overrides)
        except UserError as e:
            fail(str(e))
    hydra_flags = [a for a in args if a not in ns.overrides]
    sys.argv = ["dendsn train", *hydra_flags, *overrides]
    app = hydra.main(config_path="pkg://dendsn_conf", config_name="train", version_base="1.3")(_task)
    from .train import STOP

    STOP.requested = False
    launcher = _value_of(overrides, "hydra/launcher") or "basic"
    elsewhere = ns.multirun and launcher != "basic" and not printing and not informational  # jobs in other processes
    if elsewhere:
        os.environ["HYDRA_FULL_ERROR"] = "1"      # a launcher's failure comes here (one line), not as Hydra's traceback
        STOP.immediate = True                     # Ctrl-C stops the launcher at once (its workers may not see it)
    quiet_children = contextlib.nullcontext()
    if elsewhere and launcher == "submitit_local":    # its job controllers write to our terminal: to a file instead
        quiet_children = _children_stderr_to(Path(str(_value_of(overrides, "hydra.sweep.dir"))) / ".submitit"
                                             / "controllers.log")
    try:
        with STOP, _keep_run_record_unless_trained(overrides), quiet_children:
            app()
    except SystemExit as e:
        _drop_refused_run(e.code)
        raise
    except (KeyboardInterrupt, Exception) as e:
        if not elsewhere or isinstance(e, SweepInterrupted):
            raise
        fail(*_launcher_stopped(e, Path(str(_value_of(overrides, "hydra.sweep.dir"))), launcher))
    finally:
        STOP.immediate = False
        distributed.close()
    if FAILED_JOBS:
        sys.exit(1)


def torchrun_command(args: list[str]) -> None:
    """`dendsn torchrun [torchrun's options] train [overrides]`: torchrun's own launcher (torch.distributed.run)
    starting `python -m dendsn_cli train ...` in every process, as `torchrun ... -m dendsn_cli train` does; but a
    run that fails or is interrupted ends with rank 0's one line and its exit code, not torchrun's report."""
    if "train" not in args:
        raise UserError("dendsn torchrun needs the training to start: dendsn torchrun --nproc_per_node=N train "
                        "[overrides] (torchrun's options before `train`)")
    i = args.index("train")
    options, rest = args[:i], args[i + 1:]
    if "-m" in rest or "--multirun" in rest:
        raise UserError("torchrun starts one training on several processes, and -m is a sweep: run a sweep "
                        "without torchrun (spread its jobs with hydra/launcher=submitit_slurm or ray), or one "
                        "training under torchrun")
    import logging

    os.environ.setdefault("LOGLEVEL", "ERROR")     # torchrun's own warnings (its logger reads LOGLEVEL at import)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    if "OMP_NUM_THREADS" not in os.environ:          # torchrun would set 1 and say so: share the cores out
        per = next((o.split("=", 1)[1] for o in options if o.startswith("--nproc_per_node=")
                    or o.startswith("--nproc-per-node=")), "1")
        n = int(per) if per.isdigit() else 1
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // max(n, 1)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    from torch.distributed.elastic.multiprocessing.api import SignalException

    try:
        torchrun_main([*options, "-m", "dendsn_cli", "train", *rest])
    except SignalException:                  # Ctrl-C / SIGTERM to this launcher: the processes stop and save
        sys.exit(130)
    except ChildFailedError as e:
        failures = dict(e.failures)
        zero = failures.get(0)
        if zero is not None and zero.exitcode in (1, 2, 130):      # rank 0 said why in its line
            sys.exit(zero.exitcode)
        rank, f = min(failures.items()) if failures else (0, None)
        code = f.exitcode if f is not None else 1
        fail(f"process rank {rank} of the run failed (exit code {code}) and the others were stopped; "
             "run the same training in one process (dendsn train ...) to see its error", 1 if code not in (2, 130) else code)


@contextlib.contextmanager
def _children_stderr_to(path: Path):
    """Processes started meanwhile write their stderr to ``path``; this process's sys.stderr still reaches
    the terminal. (submitit's local job controllers inherit stderr and print a traceback at Ctrl-C.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    old = sys.stderr
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(saved), "wb"), write_through=True, line_buffering=True)
        try:
            yield
        finally:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr = old
            os.dup2(saved, 2)
            os.close(saved)


def _launcher_stopped(e: BaseException, root: Path, launcher: str) -> tuple[str, int]:
    """The one line (and exit code) of a sweep whose launcher (submitit, ray, joblib) ended early: by a
    Ctrl-C, or by a job that was killed or ran out of time; the table of the jobs so far is written."""
    done, kept = _table_so_far(root)
    again = _run_again(root)
    text = " ".join(str(e).split())
    if isinstance(e, KeyboardInterrupt) or "state: INTERRUPTED" in text:
        running = ("; the jobs already on the cluster keep running (scancel them to stop them, or let them finish "
                   "before running it again)" if launcher == "submitit_slurm" else "")
        return f"interrupted: the {launcher} sweep stopped{running}; {done} finished job(s) are kept{kept}; {again}", 130
    if "timed-out too many times" in text or "TIMEOUT" in text:
        return (f"a job of the {launcher} sweep ran out of time (hydra.launcher.timeout_min) more often than "
                f"hydra.launcher.max_num_timeout allows; {done} finished job(s) are kept{kept}; raise the limit and "
                f"{again}"), 1
    if "srun" in text and "slurm" in text.lower():
        return ("hydra/launcher=submitit_slurm needs a SLURM cluster (no `srun` here); on one machine use "
                "hydra/launcher=submitit_local"), 2
    return (f"the {launcher} launcher stopped the sweep: {type(e).__name__}: {shorten(text, 200)}; {done} finished "
            f"job(s) are kept{kept}; {again}"), 1


def _claim_dir_once(overrides: list[str], cfg) -> list[str]:
    """Under torchrun: join the process group, let rank 0 claim (and lock) the run dir, and give the others
    its overrides, with Hydra's own record (.hydra/) and log file left to rank 0."""
    try:
        distributed.init(str(cfg.device))
    except UserError as e:                     # this process's own problem: it says so itself
        if distributed.env_world()[0] != 0:
            print(f"dendsn: error: rank {distributed.env_world()[0]}: {e}", file=sys.stderr)
        raise
    result: tuple = ("ok", overrides)
    if distributed.is_main():
        try:
            result = ("ok", claim_dir(overrides, False, cfg))
        except UserError as e:
            result = ("error", str(e))
    kind, value = distributed.broadcast(result)
    if kind == "error":
        raise UserError(value)
    if distributed.is_main():
        return value
    return [*value, "hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]


GROUP_HELP = {
    "dataset": "the data and its splits (train / validation / test); sets its own T",
    "encoder": "how a sample becomes input spikes or currents [T, B, ...]",
    "network": "the architecture (network.hidden, network.channels, the read-out neuron)",
    "synapse": "how layers connect: plain, masked (sparsity), exp filter (tau_s), weight bounds, Dale's law",
    "neuron": "the neuron model of the hidden layers, point or dendritic",
    "wiring": "the morphology of a dendritic neuron (dendritic neurons only)",
    "readout": "how the answer is read from the output layer: the loss and the prediction rule",
    "learning": "the learning rule: surrogate-gradient BPTT or a local plasticity rule",
    "optim": "the optimizer of what learns by gradient (optim.lr, optim.weight_decay)",
    "logger": "what goes to TensorBoard (histograms, pictures, how often)",
    "experiment": "presets that set several groups at once (the README's figures)",
    "stimulus": "dendsn simulate only: what drives the neurons (not a group of train)",
}


def _root_key_help() -> list[tuple[str, str]]:
    """(key, its comment in conf/train.yaml) for every root key, in the file's order."""
    text = resources.files("dendsn_conf").joinpath("train.yaml").read_text()
    out, prefix = [], ""
    for line in text.split("hydra:")[0].splitlines():
        m = re.match(r"^(\s*)([A-Za-z_]+):\s*([^#]*?)\s*(?:#\s*(.*))?$", line)
        if not m or line.lstrip().startswith("-") or m.group(2) == "defaults":
            continue
        indent, key, value, comment = m.groups()
        if not indent:
            prefix = key + "." if not value else ""
            if value:
                out.append((key, f"{comment or ''} (default: {value})".strip()))
        elif prefix:
            out.append((prefix + key, f"{comment or ''} (default: {value})".strip()))
    return out


def train_help() -> str:
    """`dendsn train --help`: one line per config group (its options) and per root key."""
    groups, defaults = _groups(), _default_choices()
    lines = ["usage: dendsn train [GROUP=OPTION | KEY=VALUE ...] [-m] [--cfg job] [--help]",
             "", "Train a spiking network. Pick options with GROUP=OPTION, set keys with KEY=VALUE (any key of the",
             "composed config, e.g. neuron.tau=4 optim.lr=0.01), sweep with -m; `dendsn list` describes every option.",
             "", "config groups (* = default):"]
    for group, options in groups.items():
        names = ", ".join(f"{n}*" if defaults.get(group) == n else n for n, _ in options)
        lines.append(f"  {group}: {names}")
        if group in GROUP_HELP:
            lines.append(f"      {GROUP_HELP[group]}")
    lines += ["", "root keys:"]
    width = max(len(k) for k, _ in _root_key_help())
    lines += [f"  {k:<{width}}  {d}" for k, d in _root_key_help()]
    lines += ["", "examples:",
              "  dendsn train neuron=lif epochs=3                  one run",
              "  dendsn train -m neuron=lif,dend_lif seed=0,1      a sweep: a table of its jobs at the end",
              "  dendsn train -m hydra/sweeper=optuna 'optim.lr=interval(0.001,0.03)'   an Optuna study",
              "  dendsn train --cfg job neuron=if                  print the composed config, run nothing",
              "", "Runs go to outputs/<date>/<time>/ (sweeps to outputs/multirun/); watch them with: tensorboard --logdir outputs"]
    return "\n".join(lines)


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("dendsn")
    except PackageNotFoundError:
        return "unknown (not installed)"


# ---------------------------------------------------------------- eval
def eval_command(args: list[str]) -> None:
    from . import checkpoint
    from .config import compose, validate
    from .train import evaluate_checkpoint

    if any(a in ("-h", "--help") for a in args):
        print("usage: dendsn eval ckpt=PATH [KEY=VALUE ...]\n"
              "Composes the config the checkpoint was trained with (plus your overrides, e.g. device=cpu),\n"
              "loads its weights and prints test accuracy and loss.")
        return
    value = next((a.split("=", 1)[1] for a in args if a.startswith("ckpt=")), None)
    if value is None:
        fail("dendsn eval needs ckpt=PATH (a checkpoint file or a run dir)")
    path = checkpoint.find(value, "ckpt")
    ck = checkpoint.load(path, "ckpt")
    user = [a for a in args if not a.startswith("ckpt=")]
    cfg = compose(checkpoint.check_overrides(ck["overrides"], user, path, "ckpt"))
    validate(cfg)
    r = evaluate_checkpoint(cfg, path, ck)
    print(f"dendsn eval: {path} (epoch {r['epoch']}) | test acc {r['test_acc']:.2%} | "
          f"test loss {r['test_loss']:.4f} | {r['n_test']} samples")


def simulate_command(args: list[str]) -> None:
    from .simulate import command

    command(args)


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    except BrokenPipeError:                 # `dendsn --help | head`: the reader left; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


def _main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    if args[0] in ("--version", "-V", "version"):
        import torch

        print(f"dendsn {version()} (torch {torch.__version__}, python {sys.version.split()[0]})")
        return
    cmd, rest = args[0], args[1:]
    commands = {"train": train_command, "eval": eval_command, "simulate": simulate_command, "list": list_command,
                "torchrun": torchrun_command}
    if cmd not in commands:
        fail(f"unknown command {cmd!r}; use train, eval, simulate, list or torchrun (dendsn --help)")
    try:
        commands[cmd](rest)
    except SweepInterrupted as e:
        fail(e.report(), 130)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:
        raise
    except Exception as e:
        if os.environ.get("DENDSN_DEBUG") and not isinstance(e, UserError):
            raise
        fail(*describe(e))


if __name__ == "__main__":
    main()
