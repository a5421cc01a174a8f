"""Training past one process: torchrun data parallelism (gloo on this CPU).

Real 2-process runs through `dendsn torchrun` (torch.distributed.run, as `torchrun ... -m dendsn_cli` does):
their weights equal a 1-process run with the same global batch and seed; an interrupted 2-process run
resumed ends where an uninterrupted one does; only rank 0 writes; what cannot work fails in one line.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import SIGNAL_TARGET, TINY, one_error, run_dendsn
from test_data import write_fake_mnist

DDP = [*TINY, "device=cpu"]
TWO = ["torchrun", "--standalone", "--nproc_per_node=2", "train"]


def weights(run) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=False)["model"]


def assert_same_weights(a, b, atol=1e-5):
    wa, wb = weights(a), weights(b)
    assert set(wa) == set(wb)
    for k in wa:
        if wa[k].is_floating_point():
            assert torch.allclose(wa[k], wb[k], atol=atol, rtol=0), (k, (wa[k] - wb[k]).abs().max())


@pytest.fixture(scope="module")
def two_and_one(tmp_path_factory):
    """The same tiny training in 2 processes and in 1 (trained once for the module)."""
    root = tmp_path_factory.mktemp("ddp")
    two = run_dendsn(*TWO, *DDP, "hydra.run.dir=two", cwd=root, check=True)
    one = run_dendsn("train", *DDP, "hydra.run.dir=one", cwd=root, check=True, env={"OMP_NUM_THREADS": "1"})
    return root, two, one


def test_two_processes_train_the_weights_of_one(two_and_one):
    root, two, one = two_and_one
    assert_same_weights(root / "one", root / "two")
    m1, m2 = (json.loads((root / d / "metrics.json").read_text()) for d in ("one", "two"))
    for key in ("train_loss", "train_acc", "val_acc", "test_acc", "test_loss"):  # evaluation: sharded, reduced
        assert m1["final"][key] == pytest.approx(m2["final"][key], abs=1e-6), key
    assert m2["status"] == "completed"


def test_only_rank_zero_writes_and_speaks(two_and_one):
    root, two, _ = two_and_one
    run = root / "two"
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # one TensorBoard writer
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == [
        "checkpoints",
        *[p.name for p in run.glob("events.out.tfevents.*")],
        "metrics.json",
        "train.log",
    ]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert two.stderr.count("epoch 2/2:") == 1 and two.stdout.count("dendsn: 2 epochs") == 1
    assert sorted(d.name for d in root.iterdir()) == ["one", "two"]  # no second run dir of rank 1


def test_an_interrupted_two_process_run_resumes_to_the_same_weights(two_and_one, tmp_path, signal_env):
    root, _, _ = two_and_one
    p = run_dendsn(
        *TWO,
        *DDP,
        SIGNAL_TARGET,
        "hydra.run.dir=run",
        cwd=tmp_path,
        env={
            **signal_env,
            "DENDSN_TEST_SIGNALS": "TERM@8",  # epoch 2, batch 2 of 6,
            "DENDSN_TEST_SIGNAL_RANK": "1",
        },
    )  # to rank 1 only: all must agree
    one_error(p, "interrupted (epoch 2, batch 2/6)", "resume=", code=130)
    assert "Traceback" not in p.stdout + p.stderr and "ChildFailedError" not in p.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "interrupted"
    run_dendsn(*TWO, *DDP, SIGNAL_TARGET, "resume=run", cwd=tmp_path, env=signal_env, check=True)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"
    assert_same_weights(root / "two", tmp_path / "run")


def test_the_event_network_trains_the_same_in_two_processes(tmp_path):
    write_fake_mnist(tmp_path / "data", n_train=60, n_test=20)
    args = [
        "experiment=fmnist_exact",
        "dataset=mnist",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.val=20",
        "batch_size=20",
        "epochs=1",
        "network.hidden=[12]",
        "network.flip=0",
        "progress=false",
        "device=cpu",
    ]
    run_dendsn(*TWO, *args, "hydra.run.dir=two", cwd=tmp_path, check=True)
    run_dendsn("train", *args, "hydra.run.dir=one", cwd=tmp_path, check=True)
    assert_same_weights(tmp_path / "one", tmp_path / "two", atol=1e-4)
    f1, f2 = (json.loads((tmp_path / d / "metrics.json").read_text())["final"] for d in ("one", "two"))
    assert f1["test_acc_ordinary"] == pytest.approx(f2["test_acc_ordinary"])
    assert math.isfinite(f2["test_loss"])


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["learning=stdp"], ["learning=stdp updates weights by a local rule", "one process"]),
        (["batch_size=1"], ["batch_size=1 is the global batch", "at least 2"]),
        (["-m", "seed=0,1"], ["-m is a sweep", "hydra/launcher=submitit_slurm"]),
        (["neuron=lifx"], ["neuron=lifx is not an option"]),
    ],
)
def test_what_cannot_run_on_several_processes_fails_in_one_line(tmp_path, args, fragments):
    p = run_dendsn(*TWO, *TINY, "epochs=1", *args, "hydra.run.dir=run", cwd=tmp_path)
    one_error(p, *fragments)
    assert not (tmp_path / "run").exists()  # a refused run leaves no directory


def test_ctrl_c_to_dendsn_torchrun_saves_and_ends_in_one_line(tmp_path):
    import os
    import signal
    import subprocess
    import time

    from conftest import DENDSN

    proc = subprocess.Popen(
        [DENDSN, *TWO, *DDP, "epochs=200", "hydra.run.dir=run"],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "run" / "metrics.json").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # to the launcher: it hands the stop to every process
    out, err = proc.communicate(timeout=120)

    class P:
        returncode, stdout, stderr = proc.returncode, out, err

    one_error(P, "interrupted", "checkpoint saved at", code=130)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "interrupted"


def test_evaluation_splits_smaller_than_the_world_are_one_line(tmp_path):
    p = run_dendsn(*TWO, *TINY, "epochs=1", "dataset.val=1", "hydra.run.dir=run", cwd=tmp_path)
    one_error(p, "the validation split has 1 samples, fewer than the 2 processes")


def test_dendsn_torchrun_needs_the_training(dendsn_here):
    one_error(dendsn_here("torchrun", "--nproc_per_node=2"), "dendsn torchrun --nproc_per_node=N train")
