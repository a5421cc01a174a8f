"""`dendsn train [KEY=VALUE ...] [-m]`: the pipeline (`pipeline.py`) with the training as each job.

What train adds to the pipeline: resume=PATH (the checkpoint's own overrides, in its run dir), one run
under torchrun (rank 0 claims the run dir), a sweep run again into its own dir (completed jobs kept,
interrupted ones resumed), Ctrl-C stopping a whole sweep with the table of its jobs so far, launchers
that run the jobs in other processes (submitit, ray, joblib), and the results table at a sweep's end
(`SweepReport`, the Hydra callback that conf/train.yaml names as ``dendsn_cli.cli.SweepReport``).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import open_dict

from .. import config
from ..errors import UserError, shorten
from ..runs import distributed, rundir, sweep
from ..runs.overrides import quoted, value_of
from ..runs.state import STATE
from .listing import train_help
from .outcome import describe, fail
from .pipeline import Command, Launch, run, run_job

TORCHRUN_SWEEP = (
    "torchrun starts one training on several processes, and -m is a sweep: run a sweep without "
    "torchrun (spread its jobs with hydra/launcher=submitit_slurm or ray), or one training under torchrun"
)


def loop() -> Any:
    """`dendsn_cli.train`, the training loop: imported when a run starts (it imports torch, which
    `dendsn train --help` does without)."""
    from .. import train  # noqa: PLC0415  (torch: not for --help)

    return train


def checkpoints() -> Any:
    """`dendsn_cli.runs.checkpoint` (imports torch), for resume and re-run sweeps."""
    from ..runs import checkpoint  # noqa: PLC0415  (torch: not for --help)

    return checkpoint


class Train(Command):
    name = config_name = "train"
    job_name = "cli"  # the module the task function lived in when Hydra first named the jobs
    dropped_overrides = ("resume=", "hydra.")

    def help_text(self) -> str:
        return train_help()

    def check_args(self, ns: Any) -> None:
        if ns.multirun and (ns.cfg or ns.info or ns.shell_completion):
            raise UserError(
                "--cfg / --info show one run's config: drop -m to print it (every job of the sweep "
                "shares it, with its own swept values)"
            )

    def check_run(self, ns: Any) -> None:
        if ns.multirun and distributed.wanted():
            raise UserError(TORCHRUN_SWEEP)

    def prepare(self, overrides: list[str]) -> list[str]:
        return resume_overrides(overrides)

    def compose(self, overrides: list[str], return_hydra_config: bool = False) -> Any:
        return config.compose(overrides, return_hydra_config=return_hydra_config)

    def validate(self, cfg: Any) -> None:
        config.validate(cfg)

    def check_sweep(self, overrides: list[str]) -> tuple[list[str], list[str]]:
        check = config.check_sweep(overrides)
        return check.overrides, list(check.exclude_keys)

    def claim(self, overrides: list[str], multirun: bool, cfg: Any) -> list[str]:
        if distributed.wanted():
            return rundir.claim_dir_once(overrides, cfg, self.compose)
        return rundir.claim_dir(overrides, multirun, cfg, self.compose)

    def launch(self, ns: Any, overrides: list[str], printing: bool, informational: bool) -> Launch:
        return TrainLaunch(ns, overrides, printing, informational)

    def before_job(self) -> None:
        if distributed.active():  # every rank's Hydra has made the run dir: a refused run removes it after
            distributed.barrier()

    def job(self, cfg: Any, run_dir: Path, overrides: list[str], choices: dict, hc: Any, multirun: bool) -> Any:
        if multirun:
            try:  # launchers may run jobs in other processes; a
                rundir.lock_dir(run_dir, "hydra.sweep.subdir")  # job dir in use is not this job's to mark
            except UserError as e:
                print(f"dendsn: job {hc.job.num} not run: {e}", file=sys.stderr)
                return self.failed_value(hc, run_dir)
            done = earlier_job(cfg, run_dir, hc.job.num)
            if done is not None:  # a re-run sweep: this job completed before
                return sweep.objective(done)
        train = loop()
        result = train.train(cfg, run_dir, overrides, choices)
        if not multirun:
            return result
        if train.STOP.requested:  # asked to stop while the job's last epoch finished
            raise sweep.SweepInterrupted(run_dir, hc.job.num, "finished")
        return sweep.objective(result)

    def failure(self, e: BaseException, cfg: Any) -> tuple[str, int]:
        return describe(e, cfg)

    def job_failed(self, run_dir: Path, hc: Any, code: int) -> None:
        if code == 130:  # Ctrl-C / SIGTERM stops the whole sweep, not one job
            raise sweep.SweepInterrupted(run_dir, hc.job.num, "stopped") from None

    def failed_value(self, hc: Any, run_dir: Path) -> float | None:
        """None, which Optuna records as a failed trial. Optuna's sweeper ends a study by asking for its best
        trial, which raises when no trial completed; so the last trials of a study in which none completed
        return the worst value (-inf when maximizing) instead."""
        sweeper = hc.sweeper
        if "optuna" not in str(sweeper.get("_target_", "")) or "n_trials" not in sweeper:
            return None
        if hc.job.num < int(sweeper.n_trials) - max(int(sweeper.get("n_jobs", 1)), 1):
            return None
        for job in sweep.job_dirs(run_dir.parent):
            if job != run_dir and sweep.read_job(job)["status"] == "completed":
                return None
        return math.inf if "minimize" in str(sweeper.get("direction", "")) else -math.inf


TRAIN = Train()


def task(cfg: Any) -> Any:
    """Hydra's task function of `dendsn train` (launchers pickle it by reference)."""
    return run_job(TRAIN, cfg)


def command(args: list[str]) -> None:
    run(TRAIN, args, task)


# ---------------------------------------------------------------- resume
def resume_overrides(overrides: list[str]) -> list[str]:
    """For resume=PATH: the checkpoint's own overrides, then the user's, in the original run dir."""
    value = next((o.split("=", 1)[1] for o in overrides if o.startswith("resume=")), None)
    if value is None or value.strip() == "null":
        return overrides
    if value.strip() in ("", "''", '""'):
        raise UserError(
            "resume= is empty (an unset shell variable?): give the run dir or checkpoint to continue, "
            "e.g. resume=outputs/2026-01-01/12-00-00, or leave resume out for a new run"
        )
    checkpoint = checkpoints()
    path = checkpoint.find(value, "resume")
    ck = checkpoint.load(path, "resume")
    user = [o for o in overrides if not o.startswith("resume=")]
    merged = checkpoint.check_overrides(ck["overrides"], user, path, "resume") + [f"resume={quoted(str(path))}"]
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if (run_dir / ".hydra").is_dir() and not any(o.startswith("hydra.run.dir=") for o in merged):
        merged.append(f"hydra.run.dir={quoted(str(run_dir))}")
    return merged


def earlier_job(cfg: Any, run_dir: Path, num: Any) -> dict | None:
    """A sweep run again into its own dir: a job that completed before is kept (its metrics, returned here,
    stand for it), one that was interrupted resumes from its last.pt (``cfg.resume`` is set), and one that
    failed or never started trains from the start. None: train this job."""
    saved = sweep.read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").exists() else {}
    last = run_dir / "checkpoints" / "last.pt"
    if saved.get("status") != "completed" and last.exists():
        try:
            ck = checkpoints().load(last, "resume")
        except UserError:
            ck = {}
        if (
            ck.get("batch") == 0
            and isinstance(ck.get("epoch"), int)
            and ck["epoch"] >= int(cfg.epochs)
            and ck.get("history")
        ):
            history = ck["history"]  # stopped between its last save and its record
            saved = {
                **saved,
                "status": "completed",
                "epochs_completed": len(history),
                "final": history[-1],
                "best": ck.get("best", {}),
                "history": history,
            }
            (run_dir / "metrics.json").write_text(json.dumps(saved, indent=2))
    if saved.get("status") == "completed":
        (run_dir / "error.txt").unlink(missing_ok=True)
        print(f"dendsn: job {num} ({run_dir.name}) completed before: kept, not trained again", file=sys.stderr)
        return saved
    (run_dir / "error.txt").unlink(missing_ok=True)  # an earlier failure: this attempt decides
    if last.exists() and not cfg.get("resume"):
        with open_dict(cfg):
            cfg.resume = str(run_dir)
        print(f"dendsn: job {num} ({run_dir.name}) resumes from {last}", file=sys.stderr)
    return None


# ---------------------------------------------------------------- launching
class TrainLaunch(Launch):
    """Around the app: the stop flag (Ctrl-C / SIGTERM save and stop), the resumed run's record kept
    unless it trained, and for launchers that run the jobs in other processes (submitit, ray, joblib):
    Ctrl-C stops at once, their failures end in one line, submitit_local's controllers write to a file."""

    def __init__(self, ns: Any, overrides: list[str], printing: bool, informational: bool):
        self.stop = loop().STOP
        self.stop.requested = False
        self.overrides = overrides
        self.launcher = value_of(overrides, "hydra/launcher") or "basic"
        self.elsewhere = ns.multirun and self.launcher != "basic" and not printing and not informational
        if self.elsewhere:
            os.environ["HYDRA_FULL_ERROR"] = "1"  # a launcher's failure comes here (one line), not as Hydra's traceback
            self.stop.immediate = True  # Ctrl-C stops the launcher at once (its workers may not see it)
        self.held = contextlib.ExitStack()

    def __enter__(self) -> TrainLaunch:
        self.held.enter_context(self.stop)
        self.held.enter_context(rundir.keep_run_record_unless_trained(self.overrides))
        if self.elsewhere and self.launcher == "submitit_local":  # its job controllers write to our terminal
            self.held.enter_context(children_stderr_to(self.sweep_dir() / ".submitit" / "controllers.log"))
        return self

    def __exit__(self, *exc: Any) -> None:
        self.held.__exit__(*exc)

    def sweep_dir(self) -> Path:
        return Path(str(value_of(self.overrides, "hydra.sweep.dir")))

    def stopped(self, e: BaseException) -> None:
        if self.elsewhere and not isinstance(e, sweep.SweepInterrupted):
            fail(*launcher_stopped(e, self.sweep_dir(), self.launcher))

    def close(self) -> None:
        self.stop.immediate = False
        distributed.close()


@contextlib.contextmanager
def children_stderr_to(path: Path) -> Iterator[None]:
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


def launcher_stopped(e: BaseException, root: Path, launcher: str) -> tuple[str, int]:
    """The one line (and exit code) of a sweep whose launcher (submitit, ray, joblib) ended early: by a
    Ctrl-C, or by a job that was killed or ran out of time; the table of the jobs so far is written."""
    done, kept = sweep.table_so_far(root)
    again = sweep.run_again(root)
    text = " ".join(str(e).split())
    if isinstance(e, KeyboardInterrupt) or "state: INTERRUPTED" in text:
        running = (
            "; the jobs already on the cluster keep running (scancel them to stop them, or let them finish "
            "before running it again)"
            if launcher == "submitit_slurm"
            else ""
        )
        return (
            f"interrupted: the {launcher} sweep stopped{running}; {done} finished job(s) are kept{kept}; {again}",
            130,
        )
    if "timed-out too many times" in text or "TIMEOUT" in text:
        return (
            f"a job of the {launcher} sweep ran out of time (hydra.launcher.timeout_min) more often than "
            f"hydra.launcher.max_num_timeout allows; {done} finished job(s) are kept{kept}; raise the limit and "
            f"{again}"
        ), 1
    if "srun" in text and "slurm" in text.lower():
        return (
            "hydra/launcher=submitit_slurm needs a SLURM cluster (no `srun` here); on one machine use "
            "hydra/launcher=submitit_local"
        ), 2
    return (
        f"the {launcher} launcher stopped the sweep: {type(e).__name__}: {shorten(text, 200)}; {done} finished "
        f"job(s) are kept{kept}; {again}"
    ), 1


# ---------------------------------------------------------------- the end of a sweep
class SweepReport(Callback):
    """Hydra callback: after a sweep, a table of its jobs (best validation accuracy first), written to
    sweep_results.csv / .json at the sweep root, and the list of the jobs that failed (error.txt)."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
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
            STATE.failed_jobs.append(f"{root / r['dir']}: {r['error']}")
        ok = sum(r["status"] == "completed" for r in rows)
        print(f"dendsn: sweep finished: {ok} job(s) completed, {len(failed)} failed | {root}", file=sys.stderr)
        for line in STATE.failed_jobs:
            print(f"dendsn:   failed {line}", file=sys.stderr)
