"""The in-process runner of the tests (conftest.run_here): what a command prints is what the console
script prints, and a run leaves this process as it found it (the next test sees a fresh process)."""

import fcntl
import logging
import os
import signal
import sys

import torch
from conftest import TINY, run_dendsn, run_here

PLUGIN = '''
from dendsn_cli.learning import BPTT


class Plugged(BPTT):
    """BPTT under a user's own name, imported from PYTHONPATH."""
'''


def process_state():
    root = logging.getLogger()
    return (
        os.getcwd(),
        list(sys.argv),
        list(sys.path),
        list(root.handlers),
        root.level,
        dict(os.environ),
        signal.getsignal(signal.SIGINT),
        signal.getsignal(signal.SIGTERM),
        signal.getsignal(signal.SIGHUP),
        torch.get_default_dtype(),
        torch.get_num_threads(),
        torch.is_grad_enabled(),
    )


def test_a_refused_input_prints_the_same_in_this_process_and_in_a_subprocess(tmp_path):
    args = ("train", "neuron=lifx", "progress=false", "hydra.run.dir=run")
    here, there = run_here(*args, cwd=tmp_path), run_dendsn(*args, cwd=tmp_path)
    assert (here.returncode, here.stdout, here.stderr) == (there.returncode, there.stdout, there.stderr)
    assert here.returncode == 2 and here.stderr.startswith("dendsn: error: neuron=lifx is not an option")


def test_a_run_in_this_process_leaves_the_process_as_it_found_it(tmp_path):
    plug = tmp_path / "plug"
    plug.mkdir()
    (plug / "pluggedrule.py").write_text(PLUGIN)
    before = process_state()
    p = run_here(
        "train",
        *TINY,
        "epochs=1",
        "learning._target_=pluggedrule.Plugged",
        "hydra.run.dir=run",
        cwd=tmp_path,
        env={"PYTHONPATH": str(plug)},
        check=True,
    )
    assert "dendsn: 1 epoch in" in p.stdout and "dendsn: run | cpu" in p.stderr  # logging's and print's output
    assert "pluggedrule.Plugged" in (tmp_path / "run/.hydra/config.yaml").read_text()
    assert process_state() == before
    assert "pluggedrule" not in sys.modules  # the next run imports its plug-ins afresh
    with open(tmp_path / "run/.dendsn.lock", "a+") as f:  # the run dir's lock was let go
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    again = run_here(
        "train",
        "resume=run",
        "epochs=2",
        "learning._target_=pluggedrule.Plugged",
        cwd=tmp_path,
        env={"PYTHONPATH": str(plug)},
    )
    assert again.returncode == 0, again.stderr
