"""One run, one directory: claiming it before Hydra starts, the exclusive lock a run holds on it, and
one-line messages for a directory that cannot be used.

A run (and each job of a sweep) locks ``<dir>/.dendsn.lock`` with ``flock`` for the life of its
process; a second run into the same directory fails in one line. The kernel drops the lock when
the process ends however it ends (SIGKILL too), so `is_locked` also tells a live run from one that
was killed and left ``status: running`` behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from omegaconf import OmegaConf

try:
    import fcntl
except ImportError:  # not POSIX: no lock
    fcntl = None

from ..errors import UserError, shorten
from . import distributed
from .overrides import quoted, value_of
from .state import STATE

LOCK_NAME = ".dendsn.lock"
SAME_SWEEP_IGNORES = ("progress", "profile", "resume", "ckpt")  # keys that do not change what a job learns


def dir_problem(path: Path, key: str, e: OSError) -> UserError:
    shown = shorten(path)
    if e.errno == errno.ENAMETOOLONG:
        return UserError(f"{key}={shown} is too long a path for the file system; choose a shorter {key}")
    if isinstance(e, (NotADirectoryError, FileExistsError)) or e.errno in (errno.ENOTDIR, errno.EEXIST):
        parent = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
        if parent == path:
            return UserError(f"{key}={shown} is a file, not a directory; choose another {key}")
        return UserError(f"{key}={shown} lies below {shorten(parent)}, which is a file; choose another {key}")
    if isinstance(e, PermissionError) or e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UserError(f"{key}={shown} cannot be written ({e.strerror}); choose a directory you can write to")
    return UserError(f"{key}={shown} cannot be used ({e.strerror or e}); choose another {key}")


def lock_dir(path: Path, key: str) -> None:
    """Hold an exclusive lock on ``path`` for the life of this process: a second run into it fails in
    one line. The kernel drops the lock when the process ends, however it ends (SIGKILL too)."""
    if fcntl is None:  # not POSIX: no lock
        return
    real = os.path.realpath(path)
    if real in STATE.locks:
        return
    try:
        f = open(Path(path) / LOCK_NAME, "a+")
    except OSError as e:
        raise dir_problem(Path(path), key, e) from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        pid = f.read().strip()
        f.close()
        raise UserError(
            f"{key}={shorten(path)} is in use by another dendsn run{f' (pid {pid})' if pid.isdigit() else ''}; "
            f"wait for it to end, or choose another {key}"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    STATE.locks[real] = f


def is_locked(path: Path) -> bool:
    """Is a live dendsn process holding ``path``'s lock (the run is still going)?"""
    if fcntl is None:
        return False
    lock = Path(path) / LOCK_NAME
    if os.path.realpath(path) in STATE.locks:
        return True
    if not lock.exists():
        return False
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


# ---------------------------------------------------------------- claiming the directory before Hydra
def holds_run(path: Path, multirun: bool) -> str | None:
    """What in ``path`` shows an earlier run (or sweep) was there, or None."""
    marks = (
        ["multirun.yaml", "sweep_results.csv"] if multirun else [".hydra", "checkpoints", "metrics.json", "train.log"]
    )
    found = next((m for m in marks if (path / m).exists()), None)
    if found is None and multirun and path.is_dir():
        found = next((c.name for c in sorted(path.iterdir()) if c.is_dir() and (c / ".hydra").is_dir()), None)
    return found


def make_dir(path: Path, key: str, fresh: bool) -> tuple[Path, Path | None]:
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
                raise dir_problem(candidate, key, e) from None
            if fresh:
                n += 1
                candidate = path.with_name(f"{path.name}_{n}")
                continue
            top = None
        except OSError as e:
            raise dir_problem(candidate, key, e) from None
        if not os.access(candidate, os.W_OK | os.X_OK):
            raise dir_problem(candidate, key, PermissionError(errno.EACCES, "permission denied"))
        return candidate, top


def drop_refused_run(code) -> None:
    """A run refused before it trained (bad input, exit 2) leaves no directory behind, when this command
    made that directory: nothing in it but Hydra's record of the refused config and the lock."""
    d = STATE.created_dir.resolve() if STATE.created_dir is not None else None
    if code != 2 or d is None or not d.is_dir():
        return
    if any((d / m).exists() for m in ("checkpoints", "metrics.json")) or any(
        p.is_dir() and (p / ".hydra").is_dir() for p in d.iterdir()
    ):
        return
    shutil.rmtree(d, ignore_errors=True)
    top = STATE.created_top.resolve() if STATE.created_top is not None else d
    for parent in d.parents:  # the parents this command made (outputs/<date>/), if empty
        if top not in (parent, *parent.parents) or not parent.is_dir() or any(parent.iterdir()):
            break
        try:
            parent.rmdir()
        except OSError:
            break


def claim_dir(overrides: list[str], multirun: bool, cfg: Any, compose: Callable[..., Any]) -> list[str]:
    """Make the run (or sweep) dir, refuse one that holds another run unless this is a resume, lock it,
    and name it in the overrides (so Hydra does not compute a second, later time stamp). ``cfg``: the
    run's config composed with hydra.*, or None to compose the hydra.* overrides with ``compose``."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = value_of(overrides, key)
    resume = value_of(overrides, "resume") not in (None, "null", "None")
    if given is None:
        if cfg is None:
            cfg = compose([o for o in overrides if o.lstrip("+~").startswith("hydra.")], return_hydra_config=True)
        path = Path(str(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir))
        path, made = make_dir(path, key, fresh=not resume)
        STATE.created_dir, STATE.created_top = (path, made) if made else (None, None)
    else:
        if not given.strip():
            raise UserError(f"{key}= is empty; give a directory, or leave {key} out for a fresh one under outputs/")
        path, made = make_dir(Path(given), key, fresh=False)
        STATE.created_dir, STATE.created_top = (path, made) if made and not resume else (None, None)
        found = None if resume else holds_run(path, multirun)
        if found and multirun and same_sweep(path, overrides):
            print(
                f"dendsn: {shorten(path)} holds this sweep: completed jobs are kept, interrupted ones resume from "
                "their last.pt, the others train",
                file=sys.stderr,
            )
            found = None
        if found:
            what = "sweep" if multirun else "run"
            hint = (
                "a different one (only the same -m command, basic sweeper, continues it); "
                if multirun
                else f"continue it with: dendsn train resume={quoted(str(path))}, or "
            )
            raise UserError(
                f"{key}={shorten(path)} already holds a {what} ({found}); nothing there was changed; "
                f"{hint}choose another {key}"
            )
    lock_dir(path, key)
    if given is None:
        overrides = [*overrides, f"{key}={quoted(str(path))}"]
    return overrides


def claim_dir_once(overrides: list[str], cfg: Any, compose: Callable[..., Any]) -> list[str]:
    """Under torchrun: join the process group, let rank 0 claim (and lock) the run dir, and give the others
    its overrides, with Hydra's own record (.hydra/) and log file left to rank 0."""
    try:
        distributed.init(str(cfg.device))
    except UserError as e:  # this process's own problem: it says so itself
        if distributed.env_world()[0] != 0:
            print(f"dendsn: error: rank {distributed.env_world()[0]}: {e}", file=sys.stderr)
        raise
    result: tuple = ("ok", overrides)
    if distributed.is_main():
        try:
            result = ("ok", claim_dir(overrides, False, cfg, compose))
        except UserError as e:
            result = ("error", str(e))
    kind, value = distributed.broadcast(result)
    if kind == "error":
        raise UserError(value)
    if distributed.is_main():
        return value
    return [*value, "hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]


def same_sweep(path: Path, overrides: list[str]) -> bool:
    """Does the sweep dir ``path`` hold the sweep of these overrides (the same -m command: the same task
    overrides, launcher aside), run by the basic sweeper (an Optuna study draws new trials each time)?"""
    try:
        saved = OmegaConf.load(path / "multirun.yaml")
        task = list(saved.hydra.overrides.task)
        sweeper = str(saved.hydra.sweeper.get("_target_", ""))
    except Exception:
        return False
    if "optuna" in sweeper.lower() or any(o.startswith("hydra/sweeper=") for o in overrides):
        return False

    def key_set(items):
        return sorted(
            o
            for o in items
            if not o.lstrip("+~").startswith(("hydra.", "hydra/"))
            and o.split("=", 1)[0].lstrip("+~") not in SAME_SWEEP_IGNORES
        )

    return key_set(task) == key_set(overrides)


@contextlib.contextmanager
def keep_run_record_unless_trained(overrides: list[str]) -> Iterator[None]:
    """On resume, Hydra rewrites the run's .hydra/ with the new overrides before the run starts. If the
    resumed run then fails before it saves a checkpoint (say, its overrides change the model), put
    the run's record back as it was: .hydra/ keeps describing what its checkpoints hold."""
    run_dir = value_of(overrides, "hydra.run.dir")
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
