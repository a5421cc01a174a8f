"""Resume equals the uninterrupted run, exactly, however the run was stopped.

A run that learns (dropout and stochastic firing on, so every random stream matters) is stopped by a
real signal at a chosen point (conftest.SIGNAL_RULE), resumed with `resume=`, and its per-epoch
metrics are compared with those of the same run never stopped: equal to the last bit (JSON floats).
"""

import json
import signal

import pytest
from conftest import SIGNAL_RULE, SIGNAL_TARGET, TINY, run_dendsn, run_here

RANDOM = ["network.dropout=0.2", "neuron.firing.kind=logistic", "init_rate=0.05", "optim.lr=0.01"]


def history(run):
    return json.loads((run / "metrics.json").read_text())["history"]


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    d = tmp_path_factory.mktemp("plug")
    (d / "sigrule.py").write_text(SIGNAL_RULE)
    return {"PYTHONPATH": str(d)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, plugin):
    root = tmp_path_factory.mktemp("ref")
    run_here("train", *TINY, *RANDOM, SIGNAL_TARGET, "hydra.run.dir=run", cwd=root, env=plugin, check=True)
    h = history(root / "run")
    assert len(h) == 2 and h[-1]["train_acc"] > 0.15  # it learns (chance: 0.10)
    return h


WAYS = {
    "sigterm mid-epoch": ("TERM@9", 130),
    "sigterm during an evaluation": ("TERM@eval6", 130),
    "sigint": ("INT@9", 130),
    "double ctrl-c": ("INT@9,INT@9", 130),
    "sigkill": ("KILL@9", -signal.SIGKILL),
    "sighup": ("HUP@9", 130),
    "sigterm before the first batch": ("TERM@build", 130),
}


@pytest.mark.parametrize("way", list(WAYS))
def test_a_stopped_run_resumed_ends_exactly_as_one_never_stopped(tmp_path, plugin, reference, way):
    signals, code = WAYS[way]
    p = run_dendsn(
        "train",
        *TINY,
        *RANDOM,
        SIGNAL_TARGET,
        "hydra.run.dir=run",
        cwd=tmp_path,
        env={**plugin, "DENDSN_TEST_SIGNALS": signals},
    )
    assert p.returncode == code, p.stderr
    if way == "sigterm before the first batch":  # nothing saved: the same command again is the resume
        p = run_here("train", *TINY, *RANDOM, SIGNAL_TARGET, "hydra.run.dir=run2", cwd=tmp_path, env=plugin)
        assert p.returncode == 0, p.stderr
        assert history(tmp_path / "run2") == reference
        return
    status = json.loads((tmp_path / "run/metrics.json").read_text())["status"]
    assert status == ("running" if way == "sigkill" else "interrupted")
    p = run_here("train", "resume=run", SIGNAL_TARGET, cwd=tmp_path, env=plugin)
    assert p.returncode == 0, p.stderr
    assert history(tmp_path / "run") == reference
    assert json.loads((tmp_path / "run/metrics.json").read_text())["status"] == "completed"
