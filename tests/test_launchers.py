"""Sweeps through Hydra's launcher plugins: submitit's local executor (the same code path as SLURM, with
local processes) and Ray (a local cluster, when hydra-ray-launcher is installed: `pip install -e ".[ray]"`).
Each job's directory, metrics.json and TensorBoard run are those of the basic launcher, and the sweep's
table gathers them; a sweep stopped by Ctrl-C ends in one line, and the same command finishes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import DENDSN, TINY, one_error, run_dendsn

SWEEP = [*TINY, "epochs=1", "seed=0,1", "hydra.sweep.dir=sweep"]


def assert_like_the_basic_launcher(root, p, jobs=("0_seed=0", "1_seed=1")):
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stdout + p.stderr
    for job in jobs:
        d = root / "sweep" / job
        assert json.loads((d / "metrics.json").read_text())["status"] == "completed"
        assert len(list(d.glob("events.out.tfevents.*"))) == 1
        assert (d / "checkpoints" / "last.pt").is_file() and (d / ".hydra" / "overrides.yaml").is_file()
    rows = (root / "sweep" / "sweep_results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(jobs)
    assert f"{len(jobs)} job(s) completed, 0 failed" in p.stderr


def test_a_sweep_through_submitits_local_executor(tmp_path):
    p = run_dendsn("train", "-m", *SWEEP, "hydra/launcher=submitit_local", cwd=tmp_path)
    assert_like_the_basic_launcher(tmp_path, p)
    assert (tmp_path / "sweep" / ".submitit").is_dir()  # each job's own stdout / stderr


def test_a_sweep_on_a_local_ray_cluster(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    p = run_dendsn(
        "train",
        "-m",
        *SWEEP,
        "hydra/launcher=ray",
        "+hydra.launcher.ray.init.num_cpus=2",
        cwd=tmp_path,
        env={"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"},
    )
    assert_like_the_basic_launcher(tmp_path, p)


def test_ctrl_c_stops_a_submitit_sweep_in_one_line_and_the_same_command_finishes_it(tmp_path):
    args = [
        "train",
        "-m",
        *TINY,
        "epochs=3",
        "seed=0,1,2",
        "hydra.sweep.dir=sweep",
        "hydra/launcher=submitit_local",
        "hydra.sweeper.max_batch_size=1",
    ]  # one job at a time
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [DENDSN, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    first = tmp_path / "sweep" / "0_seed=0" / "metrics.json"
    deadline = time.time() + 300
    while time.time() < deadline and not (
        first.exists() and json.loads(first.read_text() or "{}").get("status") == "completed"
    ):
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    time.sleep(2.0)  # job 1 is under way
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole process group
    out, err = proc.communicate(timeout=300)

    class P:
        returncode, stdout, stderr = proc.returncode, out, err

    line = one_error(P, "interrupted: the submitit_local sweep stopped", "run the same command again", code=130)
    assert "1 finished job(s) are kept" in line or "2 finished job(s) are kept" in line, line
    p = run_dendsn(*args, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "holds this sweep" in p.stderr
    for job in ("0_seed=0", "1_seed=1", "2_seed=2"):
        assert json.loads((tmp_path / "sweep" / job / "metrics.json").read_text())["status"] == "completed", job


def test_slurm_without_a_cluster_is_one_line(tmp_path):
    p = run_dendsn("train", "-m", *SWEEP, "hydra/launcher=submitit_slurm", cwd=tmp_path)
    one_error(p, "hydra/launcher=submitit_slurm needs a SLURM cluster", "hydra/launcher=submitit_local", code=2)


def test_launcher_defaults_let_jobs_resume(dendsn_here):
    p = dendsn_here("train", "hydra/launcher=submitit_slurm", "--cfg", "hydra")
    assert "max_num_timeout: 3" in p.stdout
    p = dendsn_here("train", "hydra/launcher=submitit_local", "--cfg", "hydra")
    assert "timeout_min: 10080" in p.stdout
