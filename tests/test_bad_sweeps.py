"""Bad-input suite, sweeps: the pre-check sees every job, and a Ctrl-C stops the whole sweep.

Each refused sweep: exit code 2, one `dendsn: error:` line, no traceback, no job run.
"""

import json

import pytest
from conftest import SIGNAL_TARGET, TINY, one_error, snapshot


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["optim.lr=interval(0.001,0.1)"], ["interval() draws values at random", "hydra/sweeper=optuna"]),
        (["neuron=glob(*lif)", "T=0"], ["T=0 is out of range"]),  # glob() expands; the check goes on
        (["T=range(70,-1,-1)"], ["T=0 is out of range"]),  # the bad job is the last, number 70
        (["neuron=lif,lifx"], ["neuron=lifx is not an option of 'neuron'"]),
        (["experiment=fmnist_stdp,nope"], ["experiment=nope is not an option"]),
        (["seed=0,1", "neuron"], ["'neuron' is not an override"]),
    ],
)
def test_a_bad_sweep_is_refused_before_any_job(dendsn_here, tmp_path, args, fragments):
    p = dendsn_here("train", "-m", *args, "hydra.sweep.dir=sweep")
    one_error(p, *fragments)
    assert not any((tmp_path / "sweep").glob("*/.hydra")) if (tmp_path / "sweep").exists() else True


def test_ctrl_c_stops_the_sweep_keeps_what_finished_and_says_how_to_go_on(dendsn, tmp_path, signal_env):
    # job 0 trains 6 steps (one epoch); job 1 gets the Ctrl-C after its step 3 (step 9 of the process)
    env = {**signal_env, "DENDSN_TEST_SIGNALS": "INT@9"}
    p = dendsn("train", "-m", *TINY, "epochs=1", SIGNAL_TARGET, "seed=0,1,2", "hydra.sweep.dir=sweep", env=env)
    line = one_error(p, "interrupted: the sweep stopped in job 1; 1 finished job(s) are kept", code=130)
    assert "run the same command again" in line
    jobs = sorted(d.name for d in (tmp_path / "sweep").iterdir() if d.is_dir())
    assert len(jobs) == 2, jobs  # job 2 never started
    status = [json.loads((tmp_path / "sweep" / j / "metrics.json").read_text())["status"] for j in jobs]
    assert status == ["completed", "interrupted"]
    assert "interrupted" in p.stdout and "completed" in p.stdout  # the table of the jobs so far
    assert (tmp_path / "sweep/sweep_results.csv").is_file()
    # the same command again finishes the sweep: job 0 is kept as it is, job 1 resumes, job 2 trains
    kept = snapshot(tmp_path / "sweep" / jobs[0] / "checkpoints")
    p = dendsn("train", "-m", *TINY, "epochs=1", SIGNAL_TARGET, "seed=0,1,2", "hydra.sweep.dir=sweep", env=signal_env)
    assert p.returncode == 0, p.stderr
    assert "holds this sweep" in p.stderr and "job 0 (0_seed=0) completed before: kept" in p.stderr
    assert "job 1 (1_seed=1) resumes from" in p.stderr and "3 job(s) completed, 0 failed" in p.stderr
    assert snapshot(tmp_path / "sweep" / jobs[0] / "checkpoints") == kept
    assert "resuming" in (tmp_path / "sweep" / jobs[1] / "train.log").read_text()
    jobs = sorted(d.name for d in (tmp_path / "sweep").iterdir() if d.is_dir())
    status = [json.loads((tmp_path / "sweep" / j / "metrics.json").read_text())["status"] for j in jobs]
    assert status == ["completed"] * 3
    assert len((tmp_path / "sweep/sweep_results.csv").read_text().strip().splitlines()) == 4  # header + 3 jobs


def test_ctrl_c_in_the_last_epoch_of_a_job_lets_it_finish_then_stops_the_sweep(dendsn, tmp_path, signal_env):
    env = {**signal_env, "DENDSN_TEST_SIGNALS": "INT@eval6"}  # in the evaluation of job 0's only epoch
    p = dendsn("train", "-m", *TINY, "epochs=1", SIGNAL_TARGET, "seed=0,1", "hydra.sweep.dir=sweep", env=env)
    line = one_error(
        p, "interrupted: the sweep stopped after job 0, which finished; 1 finished job(s) are kept", code=130
    )
    assert "resume=" not in line  # nothing to continue
    jobs = sorted(d.name for d in (tmp_path / "sweep").iterdir() if d.is_dir())
    assert len(jobs) == 1, jobs
    assert json.loads((tmp_path / "sweep" / jobs[0] / "metrics.json").read_text())["status"] == "completed"
