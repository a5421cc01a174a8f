"""Bad-input suite, run directories: one run, one directory.

Default run dirs are unique even for runs started in the same second; a run holds a lock on its
dir for its whole life; a new run into a dir that holds a run is refused unless it is a `resume=`;
a dir that cannot be made or written is one line. Nothing already in a dir changes.
"""

import fcntl
import os
import subprocess
import sys

import pytest
from conftest import DENDSN, TINY, one_error, snapshot


def test_two_runs_started_together_get_a_dir_each(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [DENDSN, "train", *TINY, "epochs=1"]
    procs = [
        subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    runs = sorted(d for d in (tmp_path / "outputs").glob("*/*") if d.is_dir())
    assert len(runs) == 2, runs
    for run in runs:  # each dir holds one run: one start line in its log
        log = (run / "train.log").read_text()
        assert log.count("training on") == 1, log
        assert (run / "checkpoints/last.pt").is_file()


def test_a_new_run_into_a_dir_holding_a_run_is_refused(dendsn_here, tmp_path):
    dendsn_here("train", *TINY, "epochs=1", "hydra.run.dir=run", check=True)
    before = snapshot(tmp_path)
    line = one_error(
        dendsn_here("train", *TINY, "epochs=1", "hydra.run.dir=run"),
        "hydra.run.dir=run already holds a run",
        "dendsn train resume=run",
    )
    assert "nothing there was changed" in line
    assert snapshot(tmp_path) == before


def test_a_dir_in_use_by_a_live_run_is_refused(dendsn_here, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / ".dendsn.lock", "a+") as f:  # what a live run holds
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write("4242\n")
        f.flush()
        one_error(
            dendsn_here("train", *TINY, "epochs=1", "hydra.run.dir=run"), "is in use by another dendsn run (pid 4242)"
        )
    assert not (run / "checkpoints").exists()


def test_a_resume_of_a_run_in_progress_is_refused(dendsn_here, tmp_path):
    dendsn_here("train", *TINY, "epochs=1", "hydra.run.dir=run", check=True)
    before = snapshot(tmp_path)
    with open(tmp_path / "run/.dendsn.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        one_error(dendsn_here("train", "resume=run", "epochs=2"), "hydra.run.dir=", "is in use by another dendsn run")
    assert snapshot(tmp_path) == before


def test_a_run_dir_that_is_a_file(dendsn_here, tmp_path):
    (tmp_path / "notes.txt").write_text("mine\n")
    one_error(dendsn_here("train", "hydra.run.dir=notes.txt"), "hydra.run.dir=notes.txt is a file, not a directory")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_a_run_dir_below_a_file(dendsn_here, tmp_path):
    (tmp_path / "notes.txt").write_text("mine\n")
    one_error(dendsn_here("train", "hydra.run.dir=notes.txt/run"), "lies below notes.txt, which is a file")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write any directory, so a read-only one cannot be shown")
def test_a_run_dir_that_cannot_be_written(dendsn_here, tmp_path):
    (tmp_path / "ro").mkdir(mode=0o500)
    one_error(dendsn_here("train", "hydra.run.dir=ro/run"), "cannot be written")


def test_a_run_dir_on_a_read_only_file_system(dendsn_here, tmp_path):
    target = "/proc/dendsn-run" if sys.platform.startswith("linux") else None
    if target is None:
        pytest.skip("needs Linux's /proc")
    one_error(dendsn_here("train", f"hydra.run.dir={target}"), f"hydra.run.dir={target}")


def test_a_sweep_into_a_dir_holding_a_sweep_is_refused(dendsn_here, tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "0_seed=0/.hydra").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("earlier\n")
    before = snapshot(tmp_path)
    one_error(
        dendsn_here("train", "-m", "seed=0,1", "hydra.sweep.dir=sweep"), "hydra.sweep.dir=sweep already holds a sweep"
    )
    assert snapshot(tmp_path) == before


def test_a_refused_run_leaves_no_dir_behind(dendsn_here, tmp_path):
    """A value only the model's constructor checks is refused after Hydra made the run dir: it goes."""
    one_error(dendsn_here("train", "network.dropout=1.5"), "dropout must be in [0, 1)")
    assert not (tmp_path / "outputs").exists()


def test_a_refused_run_removes_only_the_dirs_it_made(dendsn_here, tmp_path):
    (tmp_path / "mine").mkdir()  # the user's own empty folder stays
    one_error(dendsn_here("train", "network.dropout=1.5", "hydra.run.dir=mine/exp/run"), "dropout must be in [0, 1)")
    assert (tmp_path / "mine").is_dir() and not (tmp_path / "mine/exp").exists()
