"""The one pipeline of the commands that run jobs through Hydra (`dendsn train`, `dendsn simulate`):

    parse      Hydra's own argument parser (overrides, -m, --cfg, ...); a parse error is one line
    prevalidate  compose and validate the run, or every job of a sweep, before Hydra starts: a typo fails
               before any work; a sweep's job dirs are named by the keys that differ between its jobs
    claim      make and lock the run (or sweep) dir, refusing one that holds another run
    launch     Hydra's app, with the command's task function for each job
    report     a failed job writes error.txt and the sweep goes on; the command exits 1 when a job failed

A command supplies what differs: a `Command` (its name, config, checks, the work of one job, how a
failure ends it) and its module-level Hydra task function, ``def task(cfg): return run_job(COMMAND, cfg)``
(launchers pickle it by reference). `run(COMMAND, args, task)` is the whole command.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hydra
from hydra._internal.utils import get_args_parser  # noqa: PLC2701 (Hydra's own parser of hydra.main's flags)
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from ..errors import UserError, shorten
from ..runs import rundir, sweep
from ..runs.overrides import quoted
from ..runs.state import STATE
from .outcome import describe, fail

sweep.register_resolvers()  # ${dendsn.job_dir:...} names sweep job dirs, also in launcher workers


class Launch:
    """What a command holds while its Hydra app runs (entered around it), and what a launcher's failure
    means. The default holds nothing and lets every exception end the command as it is."""

    def __enter__(self) -> Launch:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def stopped(self, e: BaseException) -> None:
        """The app ended with ``e`` (not SystemExit): end the command in one line, or return to re-raise it."""

    def close(self) -> None:
        """After the app, however it ended."""


class Command:
    """What `train` and `simulate` supply to the pipeline."""

    name = ""  # `dendsn <name>`
    config_name = ""  # conf/<config_name>.yaml
    job_name = ""  # Hydra's job name (.hydra/hydra.yaml, a SLURM job's name)
    dropped_overrides: tuple[str, ...] = ("hydra.",)  # task overrides a job is not given

    # ------------------------------------------------ before Hydra
    def help_text(self) -> str:
        raise NotImplementedError

    def check_args(self, ns: Any) -> None:
        """Refuse a combination of flags (UserError)."""

    def check_run(self, ns: Any) -> None:
        """Refuse a run in this process's setting (UserError)."""

    def prepare(self, overrides: list[str]) -> list[str]:
        """The overrides to compose, from the command line's."""
        return overrides

    def compose(self, overrides: list[str], return_hydra_config: bool = False) -> Any:
        raise NotImplementedError

    def validate(self, cfg: Any) -> None:
        raise NotImplementedError

    def check_sweep(self, overrides: list[str]) -> tuple[list[str], list[str]]:
        """Validate every job of a sweep: (the overrides to run, the keys left out of the job dir names)."""
        raise NotImplementedError

    def claim(self, overrides: list[str], multirun: bool, cfg: Any) -> list[str]:
        return rundir.claim_dir(overrides, multirun, cfg, self.compose)

    def refusal(self, message: str) -> str:
        """The line of an input refused before Hydra."""
        return message

    def launch(self, ns: Any, overrides: list[str], printing: bool, informational: bool) -> Launch:
        return Launch()

    # ------------------------------------------------ each job (in Hydra's app)
    def before_job(self) -> None:
        """Every process, before its job's work."""

    def job(self, cfg: Any, run_dir: Path, overrides: list[str], choices: dict, hc: Any, multirun: bool) -> Any:
        """The work of one run or sweep job; what it returns goes to the sweeper."""
        raise NotImplementedError

    def failure(self, e: BaseException, cfg: Any) -> tuple[str, int]:
        """The one line and exit code of a job's exception."""
        return describe(e)

    def job_failed(self, run_dir: Path, hc: Any, code: int) -> None:
        """A sweep job failed (its error.txt is written): stop the sweep by raising, or let it go on."""

    def failed_value(self, hc: Any, run_dir: Path) -> Any:
        """What a failed sweep job returns to the sweeper."""
        return None


def parse(command: Command, args: list[str]) -> Any:
    """Hydra's own argument parser (overrides, -m, --cfg, ...); a parse error is one line."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):  # argparse's usage text and error: one line instead
            ns = get_args_parser().parse_args(args)
    except SystemExit:
        why = [ln.split("error:", 1)[1].strip() for ln in said.getvalue().splitlines() if "error:" in ln]
        fail(
            f"could not parse the arguments{': ' + shorten(why[-1], 80) if why else ''}; "
            f"see `dendsn {command.name} --help`"
        )
    try:
        command.check_args(ns)
    except UserError as e:
        fail(str(e))
    return ns


def prevalidate(command: Command, ns: Any) -> tuple[list[str], Any]:
    """The overrides to run, after checking every job; for a sweep, plus the setting that names each
    job dir by the keys that differ between the jobs (the keys all jobs share are left out). For one
    run, also its composed config (with hydra.*, for its run dir); None for a sweep."""
    overrides = command.prepare(list(ns.overrides))
    if not ns.multirun:
        cfg = command.compose(overrides, return_hydra_config=True)
        command.validate(cfg)
        return overrides, cfg
    overrides, exclude = command.check_sweep(overrides)
    if not any(o.startswith("hydra.job.config.override_dirname.exclude_keys=") for o in overrides):
        keys = sorted(set(exclude) | set(sweep.constant_keys(overrides)))
        if keys:
            overrides.append(f"hydra.job.config.override_dirname.exclude_keys=[{','.join(map(quoted, keys))}]")
    return overrides, None


@contextlib.contextmanager
def job_name(name: str) -> Iterator[None]:
    """Hydra names the job after the module of the task function; ``HYDRA_MAIN_MODULE`` names it
    ``name`` instead (a command's job keeps its name wherever its task function lives)."""
    saved = os.environ.get("HYDRA_MAIN_MODULE")
    os.environ["HYDRA_MAIN_MODULE"] = f"dendsn_cli.{name}"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("HYDRA_MAIN_MODULE", None)
        else:
            os.environ["HYDRA_MAIN_MODULE"] = saved


def run(command: Command, args: list[str], task: Callable[[Any], Any]) -> None:
    """`dendsn <command> ARGS`: check the overrides (every job of a sweep), claim the run dir, run Hydra."""
    ns = parse(command, args)
    if ns.help:
        print(command.help_text())
        return
    # --cfg / --resolve print the config a run would use: the same checks (and one-line errors) as a run
    informational = ns.hydra_help or ns.info or ns.shell_completion
    printing = ns.cfg or ns.resolve or ns.package
    overrides = list(ns.overrides)
    STATE.reset()
    if not informational:
        try:
            command.check_run(ns)
            overrides, cfg = prevalidate(command, ns)
            if not printing:
                overrides = command.claim(overrides, ns.multirun, cfg)
                STATE.sweep_overrides[:] = list(ns.overrides)
        except UserError as e:
            fail(command.refusal(str(e)))
    hydra_flags = [a for a in args if a not in ns.overrides]
    sys.argv = [f"dendsn {command.name}", *hydra_flags, *overrides]
    app = hydra.main(config_path="pkg://dendsn_conf", config_name=command.config_name, version_base="1.3")(task)
    launch = command.launch(ns, overrides, printing, informational)
    try:
        with launch, job_name(command.job_name):
            app()
    except SystemExit as e:
        rundir.drop_refused_run(e.code)
        raise
    except (KeyboardInterrupt, Exception) as e:
        launch.stopped(e)
        raise
    finally:
        launch.close()
    if STATE.failed_jobs:
        sys.exit(1)


def run_job(command: Command, cfg: Any) -> Any:
    """Hydra's task: one run, or one job of a sweep. A run's failure ends the command in one line; a sweep
    job's is written to its error.txt and said in one line, and the sweep goes on."""
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    command.before_job()
    overrides = [o for o in hc.overrides.task if not o.startswith(command.dropped_overrides)]
    try:
        return command.job(cfg, run_dir, overrides, dict(hc.runtime.choices), hc, multirun)
    except Exception as e:
        if os.environ.get("DENDSN_DEBUG") and not isinstance(e, UserError):
            raise
        message, code = command.failure(e, cfg)
        if not multirun:
            fail(message, code)
        (run_dir / "error.txt").write_text(message + "\n")
        command.job_failed(run_dir, hc, code)
        print(f"dendsn: job {hc.job.num} failed: {message}", file=sys.stderr)
        return command.failed_value(hc, run_dir)
