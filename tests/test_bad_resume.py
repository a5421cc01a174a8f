"""Bad-input suite, resume category: `resume=` honours what it is told, or refuses in one line.

A changed learning rate is applied (the schedule continues from the same point at the new rate); a
changed batch size in mid-epoch, a changed optimizer, an empty value, a finished run and another
model are refused in one line, and the run's files stay as they were.
"""

import json
import shutil

import pytest
from conftest import SIGNAL_TARGET, TINY, one_error, run_dendsn, run_here, snapshot


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A real run stopped by SIGTERM after training step 8 of 12 (inside epoch 2 of 2)."""
    from conftest import SIGNAL_RULE

    root = tmp_path_factory.mktemp("resume")
    plug = root / "plugins"
    plug.mkdir()
    (plug / "sigrule.py").write_text(SIGNAL_RULE)
    env = {"PYTHONPATH": str(plug), "DENDSN_TEST_SIGNALS": "TERM@8"}
    p = run_dendsn("train", *TINY, SIGNAL_TARGET, "hydra.run.dir=run", cwd=root, env=env)
    assert p.returncode == 130, p.stderr
    return root


@pytest.fixture
def work(stopped, tmp_path):
    shutil.copytree(stopped / "run", tmp_path / "run")
    shutil.copytree(stopped / "plugins", tmp_path / "plugins")
    return tmp_path


def resume(work, *args, run="run"):
    return run_here("train", f"resume={run}", SIGNAL_TARGET, *args, cwd=work, env={"PYTHONPATH": str(work / "plugins")})


def test_a_new_learning_rate_is_applied_on_resume(work, stopped):
    shutil.copytree(stopped / "run", work / "same")
    p = resume(work, "optim.lr=0.05")
    assert p.returncode == 0, p.stderr
    assert "resume applies optim.lr 0.005 -> 0.05" in p.stderr
    assert resume(work, run="same").returncode == 0
    new = json.loads((work / "run/metrics.json").read_text())["history"][-1]
    same = json.loads((work / "same/metrics.json").read_text())["history"][-1]
    assert new["train_loss"] != same["train_loss"]  # the rest of epoch 2 trained at the new rate
    assert new["lr"] > same["lr"] or new["lr"] == same["lr"] == 0


def test_a_new_learning_rate_without_a_schedule_is_the_rate_used(work):
    p = resume(work, "optim.lr=0.05", "lr_schedule=none")
    assert p.returncode == 0, p.stderr
    assert "resume applies optim.lr" in p.stderr and "-> 0.05" in p.stderr
    history = json.loads((work / "run/metrics.json").read_text())["history"]
    assert history[-1]["lr"] == pytest.approx(0.05)


def test_a_changed_batch_size_in_mid_epoch_is_refused(work):
    before = snapshot(work)
    one_error(
        resume(work, "batch_size=100"),
        "stopped inside epoch 2, after 2 batches of batch_size=50",
        "resume with batch_size=50",
    )
    assert snapshot(work) == before


def test_a_changed_optimizer_is_refused(work):
    before = snapshot(work)
    one_error(
        resume(work, "optim=sgd"), "trained with the Adam optimizer and this run's is SGD", "cannot change on resume"
    )
    assert snapshot(work) == before


def test_an_empty_resume_is_refused(dendsn_here):
    one_error(dendsn_here("train", "resume="), "resume= is empty")


def test_a_missing_run_is_refused(dendsn_here):
    one_error(dendsn_here("train", "resume=outputs/nope"), "resume=outputs/nope: no checkpoint there")


def test_resume_of_a_finished_run_is_refused_and_changes_nothing(work):
    assert resume(work).returncode == 0
    before = snapshot(work)
    one_error(resume(work), "already finished 2 epochs", "raise epochs=")
    assert snapshot(work) == before
