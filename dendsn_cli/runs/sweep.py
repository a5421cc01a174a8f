"""Sweeps you can compare: job directory names, the objective of a job, and the results table.

    job dirs    hydra.sweep.subdir = ${dendsn.job_dir:${hydra.job.num},${hydra.job.override_dirname}}
                -> `0_neuron=lif,seed=0`: TensorBoard names a run by its directory, so a sweep's runs
                say what they are. The CLI leaves the keys every job shares out of the name.
    objective   what `_task` returns to the sweeper: the best validation accuracy of the job (Optuna
                maximizes it), None for a failed job (Optuna records a failed trial)
    results     after a sweep: one row per job dir (its .hydra/overrides.yaml, metrics.json, error.txt),
                best validation accuracy first -> a table on stdout, sweep_results.csv and .json
    stopped     a sweep stopped by Ctrl-C (`SweepInterrupted`) or by its launcher: the table of the jobs
                so far, and how to finish it

Reads only files, so it works on the sweep dir of any launcher (joblib jobs run in other processes)
and on runs from before metrics.json had validation keys ("-" where a value is missing).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import OmegaConf

from . import rundir
from .overrides import quoted
from .state import STATE

MAX_DIR_NAME = 120  # bytes; file systems allow 255, TensorBoard shows the whole path
STATUSES = ("completed", "failed", "interrupted", "diverged", "running", "killed")
SORT_KEY = "best_val_acc"
COLUMNS = (
    "job",
    "status",
    "best_val_acc",
    "test_acc_at_best_val",
    "best_epoch",
    "final_test_acc",
    "epochs",
    "time_s",
    "overrides",
    "dir",
    "error",
)

_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+\-\[\]~@%]")
_LONG_FLOAT = re.compile(r"(?<=[=,\[])(-?\d+\.\d{5,}(?:[eE][-+]?\d+)?)(?=[,\]]|$)")


# ---------------------------------------------------------------- job directory names
def job_dir_name(num: Any, override_dirname: Any = "") -> str:
    """``<num>_<overrides>``, safe as one file name: no '/', spaces or quotes (replaced by '_'), long
    floats (Optuna's samples) shortened to 4 significant digits, at most MAX_DIR_NAME bytes (then cut
    and ended by a hash of the whole name). The job number keeps every name unique."""
    text = str(override_dirname or "")
    text = _LONG_FLOAT.sub(lambda m: f"{float(m.group(1)):.4g}", text)
    text = _UNSAFE.sub("_", text)
    name = f"{num}_{text}" if text else str(num)
    if len(name) > MAX_DIR_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: MAX_DIR_NAME - 9]}~{digest}"
    return name


def register_resolvers() -> None:
    """``${dendsn.job_dir:NUM,OVERRIDE_DIRNAME}`` for conf/train.yaml's hydra.sweep.subdir. Called when
    dendsn_cli.cli and the command pipeline are imported, so also in launcher worker processes (they
    import the task function)."""
    if not OmegaConf.has_resolver("dendsn.job_dir"):
        OmegaConf.register_new_resolver("dendsn.job_dir", job_dir_name)


def constant_keys(overrides: list[str]) -> list[str]:
    """The keys of the task overrides that are not swept (the same in every job): the CLI excludes them
    from the job directory names (hydra.job.config.override_dirname.exclude_keys)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: PLC0415  (slow to import)

    parsed = OverridesParser.create().parse_overrides(overrides)
    swept = {o.key_or_group for o in parsed if o.is_sweep_override()}
    return sorted({o.key_or_group for o in parsed if not o.is_hydra_override()} - swept)


# ---------------------------------------------------------------- objective
def objective(result: Any) -> Optional[float]:
    """The number a sweeper optimizes: the best validation accuracy (the test accuracy of the best
    epoch for runs that had no validation split); None if there is none."""
    best = result.get("best") if isinstance(result, dict) else None
    if not isinstance(best, dict):
        return None
    for key in ("val_acc", "test_acc"):
        value = _number(best.get(key))
        if value is not None:
            return value
    return None


# ---------------------------------------------------------------- results
def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_overrides(job: Path) -> list[str]:
    try:
        data = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return []
    return [str(o) for o in data] if isinstance(data, list) else []


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def job_number(job: Path) -> Optional[int]:
    m = re.match(r"\d+", job.name)
    return int(m.group()) if m else None


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Every job directory of a sweep: the folders with a Hydra record (.hydra/) under it."""
    return sorted({p.parent for p in Path(sweep_dir).glob("**/.hydra") if p.is_dir()})


def read_job(job: Path, sweep_dir: Optional[Path] = None) -> dict:
    """One row: a job's overrides, status and numbers (None where metrics.json lacks them); ``dir`` is
    the job dir relative to ``sweep_dir`` (so the results stay right when the sweep is moved)."""
    metrics = read_json(job / "metrics.json")
    error_file = job / "error.txt"
    error = error_file.read_text().strip() if error_file.exists() else None
    status = metrics.get("status")
    if error is not None and status not in ("interrupted", "diverged"):
        status = "failed"  # a failed job may have left a "running" metrics.json
    elif status not in STATUSES:
        status = "running"  # no metrics.json yet (or one we cannot read)
    if status == "running" and (job / ".dendsn.lock").exists() and not rundir.is_locked(job):
        status = "killed"  # no process holds its lock: it ended without a word (SIGKILL)
    best = metrics.get("best") if isinstance(metrics.get("best"), dict) else {}
    final = metrics.get("final") if isinstance(metrics.get("final"), dict) else {}
    has_val = _number(best.get("val_acc")) is not None
    overrides = read_overrides(job)
    return {
        "job": job_number(job),
        "status": status,
        "best_val_acc": _number(best.get("val_acc")),
        # old metrics.json: "best" was the best *test* epoch, which is not "test at the best val epoch"
        "test_acc_at_best_val": _number(best.get("test_acc")) if has_val else None,
        "best_epoch": best.get("epoch") if has_val and isinstance(best.get("epoch"), int) else None,
        "final_test_acc": _number(final.get("test_acc")),
        "epochs": metrics.get("epochs_completed") if isinstance(metrics.get("epochs_completed"), int) else None,
        "time_s": _number(metrics.get("time_s")),
        "overrides": ",".join(overrides),
        "override_list": overrides,
        "dir": str(job.relative_to(sweep_dir)) if sweep_dir is not None else str(job),
        "error": error,
    }


def _sort_key(row: dict):
    value = row[SORT_KEY]
    job = row["job"] if row["job"] is not None else math.inf
    return (value is None, -(value or 0.0), job, row["dir"])


def collect(sweep_dir, task_overrides: Optional[list[str]] = None) -> list[dict]:
    """The rows of every job under ``sweep_dir``, best validation accuracy first (None last).
    ``task_overrides``: the sweep's own (``a=1,2``, ``interval(...)``), else read from its multirun.yaml."""
    sweep_dir = Path(sweep_dir)
    rows = [read_job(job, sweep_dir) for job in job_dirs(sweep_dir)]
    rows.sort(key=_sort_key)
    swept = swept_keys(sweep_dir, rows, task_overrides)
    for row in rows:
        shown = [o for o in row["override_list"] if override_key(o) in swept] if swept else row["override_list"]
        row["swept"] = ",".join(shown)
    return rows


def swept_keys(sweep_dir: Path, rows: list[dict], task_overrides: Optional[list[str]] = None) -> set[str]:
    """The keys that tell the jobs apart: the sweep's swept keys (its task overrides with a sweep, from
    the caller or multirun.yaml; Optuna's hydra.sweeper.params) and any key whose value differs."""
    keys: set[str] = set()
    seen: dict[str, set] = {}
    for row in rows:
        for o in row["override_list"]:
            seen.setdefault(override_key(o), set()).add(o)
    for key, values in seen.items():
        if len(values) > 1 or any(key not in {override_key(o) for o in r["override_list"]} for r in rows):
            keys.add(key)
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: PLC0415  (slow to import)

        if task_overrides is None:  # the basic sweeper writes multirun.yaml, Optuna's does not
            record = yaml.safe_load((sweep_dir / "multirun.yaml").read_text()) or {}
            hydra = record.get("hydra") or {}
            task_overrides = list((hydra.get("overrides") or {}).get("task") or [])
            keys |= {str(k) for k in ((hydra.get("sweeper") or {}).get("params") or {})}
        parsed = OverridesParser.create().parse_overrides(list(task_overrides))
        keys |= {o.key_or_group for o in parsed if o.is_sweep_override()}
    except Exception:  # no or unreadable record: the differing keys alone
        pass
    return keys


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2%}"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def format_table(rows: list[dict], max_overrides: int = 48) -> str:
    """A fixed-width table (80-120 columns): job, overrides (the swept ones, floats to 4 digits, long
    ones cut with '...'), status, best val acc, test acc at that epoch, final test acc, epochs, time."""
    texts = [_LONG_FLOAT.sub(lambda m: f"{float(m.group(1)):.4g}", r.get("swept", r["overrides"])) or "-" for r in rows]
    width = min(max([len("overrides"), *map(len, texts)]), max_overrides)
    head = (
        f"{'job':>4}  {'overrides':<{width}}  {'status':<11}  {'best val':>8}  {'test@best':>9}  "
        f"{'final test':>10}  {'epochs':>6}  {'time (s)':>8}"
    )
    lines = [head, "-" * len(head)]
    for row, text in zip(rows, texts):
        job = "?" if row["job"] is None else str(row["job"])
        epochs = "-" if row["epochs"] is None else str(row["epochs"])
        time_s = "-" if row["time_s"] is None else f"{row['time_s']:.1f}"
        lines.append(
            f"{job:>4}  {_cut(text, width):<{width}}  {row['status']:<11}  {_percent(row['best_val_acc']):>8}  "
            f"{_percent(row['test_acc_at_best_val']):>9}  {_percent(row['final_test_acc']):>10}  "
            f"{epochs:>6}  {time_s:>8}"
        )
    return "\n".join(lines)


def optuna_result(sweep_dir) -> Optional[dict]:
    """Optuna's best parameters and value (its optimization_results.yaml), if the sweep was a study."""
    path = Path(sweep_dir) / "optimization_results.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(data, dict):
        return None
    value = data.get("best_value")
    if isinstance(value, float) and not math.isfinite(value):
        data["best_value"] = None  # no trial completed (JSON has no -inf)
    return data


def write_results(sweep_dir, rows: list[dict], extra: Optional[dict] = None) -> tuple[Path, Path]:
    """sweep_results.csv and sweep_results.json at the sweep root (written atomically): the same rows,
    full override strings, plain numbers (accuracies as fractions, empty / null where missing)."""
    sweep_dir = Path(sweep_dir)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    doc = {
        "sweep_dir": str(sweep_dir),
        "sort_key": SORT_KEY,
        "order": "descending, missing values last",
        "rows": [{**{k: row.get(k) for k in COLUMNS}, "override_list": row["override_list"]} for row in rows],
        **(extra or {}),
    }
    paths = sweep_dir / "sweep_results.csv", sweep_dir / "sweep_results.json"
    for path, text in zip(paths, (buf.getvalue(), json.dumps(doc, indent=2, default=str) + "\n")):
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    return paths


# ---------------------------------------------------------------- a stopped sweep
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
        done, kept = table_so_far(root)
        if self.how == "finished":
            where = f"after job {self.num}, which finished"
        elif (self.job_dir / "checkpoints" / "last.pt").exists():
            where = f"in job {self.num}"
        else:
            where = f"in job {self.num} before it trained"
        return (
            f"interrupted: the sweep stopped {where}; {done} finished job(s) are kept{kept}; the jobs after it "
            f"did not start; {run_again(root)}"
        )


def table_so_far(root: Path) -> tuple[int, str]:
    """Write (and print) the table of a stopped sweep's jobs so far: (jobs completed, " (table: CSV)" or "")."""
    rows = collect(root, STATE.sweep_overrides) if root.is_dir() else []
    if not rows:
        return 0, ""
    csv_path, _ = write_results(root, rows, {})
    print(format_table(rows))
    return sum(r["status"] == "completed" for r in rows), f" (table: {csv_path})"


def run_again(root: Path) -> str:
    """How to finish a stopped sweep (a re-run keeps what finished and resumes what stopped)."""
    return (
        f"run the same command again (with hydra.sweep.dir={quoted(str(root))}) to finish it: finished jobs are "
        "kept and stopped ones resume from their last.pt"
    )
