"""The README's presets and headline figures, run for real on Fashion-MNIST (Debian's package).

Fast tests train every preset on a small subset for one epoch (it must run and learn above chance);
the `slow` ones (`pytest -m slow`) reproduce the README's full figures.
"""

import json
from pathlib import Path

import pytest
from conftest import TINY, run_dendsn, run_here

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
needs_fashion = pytest.mark.skipif(not FASHION.exists(), reason="Debian package dataset-fashion-mnist is not installed")
DPP_README = 0.8024  # experiment=fmnist_dpp, README "Local learning rules" table


def final(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())["final"]


@needs_fashion
@pytest.mark.parametrize(
    "preset,n_train,floor",
    [
        ("fmnist_dend_mlp", 1000, 0.35),
        ("fmnist_point_mlp", 1000, 0.35),
        ("fmnist_stdp", 1000, 0.4),
        ("fmnist_dpp", 10000, 0.4),  # its small delta-rule read-out rate needs more batches (58% measured)
    ],
)
def test_every_preset_trains_on_a_subset(preset, n_train, floor, tmp_path):
    run_here(
        "train",
        f"experiment={preset}",
        f"dataset.root={tmp_path / 'data'}",
        f"dataset.n_train={n_train}",
        "dataset.n_test=500",
        "epochs=1",
        "progress=false",
        "hydra.run.dir=run",
        cwd=tmp_path,
        check=True,
    )
    assert final(tmp_path / "run")["test_acc"] > floor  # 10 classes: chance is 0.1 (+- 0.013 on 500)


def test_joblib_launcher_runs_a_parallel_sweep(tmp_path):
    p = run_dendsn(
        "train",
        "-m",
        *TINY,
        "epochs=1",
        "neuron=lif,plif",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
        check=True,
    )
    for job in ("0_neuron=lif", "1_neuron=plif"):
        m = json.loads((tmp_path / "sweep" / job / "metrics.json").read_text())
        assert m["status"] == "completed", m
    assert "2 job(s) completed, 0 failed" in p.stderr


@pytest.mark.slow
@needs_fashion
def test_default_mlp_reaches_85_percent_on_fashion_mnist_in_5_epochs(tmp_path):
    run_dendsn(
        "train",
        "dataset=fashion_mnist",
        "epochs=5",
        f"dataset.root={tmp_path / 'data'}",
        "progress=false",
        "hydra.run.dir=run",
        cwd=tmp_path,
        check=True,
        timeout=1800,
    )
    assert final(tmp_path / "run")["test_acc"] >= 0.85


@pytest.mark.slow
@needs_fashion
def test_dendritic_and_point_presets_match_the_readme(tmp_path):
    accs = {}
    for preset in ("fmnist_dend_mlp", "fmnist_point_mlp"):
        run_dendsn(
            "train",
            f"experiment={preset}",
            f"dataset.root={tmp_path / 'data'}",
            "progress=false",
            f"hydra.run.dir={preset}",
            cwd=tmp_path,
            check=True,
            timeout=1800,
        )
        accs[preset] = final(tmp_path / preset)["test_acc"]
    assert accs["fmnist_dend_mlp"] >= 0.85 and accs["fmnist_point_mlp"] >= 0.85, accs


@pytest.mark.slow
@needs_fashion
def test_stdp_features_beat_random_features_by_2_points_on_fashion_mnist(tmp_path):
    accs = {}
    for rule in ("stdp", "readout"):
        run_dendsn(
            "train",
            "experiment=fmnist_stdp",
            f"learning={rule}",
            f"dataset.root={tmp_path / 'data'}",
            "progress=false",
            f"hydra.run.dir={rule}",
            cwd=tmp_path,
            check=True,
            timeout=1800,
        )
        accs[rule] = final(tmp_path / rule)["test_acc"]
    assert accs["stdp"] >= accs["readout"] + 0.02, accs


@pytest.mark.slow
@needs_fashion
def test_dpp_preset_reaches_the_readme_figure(tmp_path):
    run_dendsn(
        "train",
        "experiment=fmnist_dpp",
        f"dataset.root={tmp_path / 'data'}",
        "progress=false",
        "hydra.run.dir=run",
        cwd=tmp_path,
        check=True,
        timeout=1800,
    )
    assert final(tmp_path / "run")["test_acc"] >= DPP_README - 0.005
