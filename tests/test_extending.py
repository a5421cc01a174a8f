"""The four additions of docs/extending.md, each its class + its YAML file, run as plug-ins from outside
the package through the real CLI: a resonate-and-fire neuron, triplet STDP, a CIFAR-10 dataset and a
per-compartment heat-map figure. The files are taken from the page's code blocks (the block whose
first line names the file), so the page shows exactly what is tested."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, one_error, run_here
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

PAGE = Path(__file__).resolve().parent.parent / "docs" / "extending.md"
BLOCK = re.compile(r"```(?:python|yaml)\n# (\S+?)(?::[^\n]*)?\n(.*?)```", re.S)


def page_files() -> dict:
    """{relative path: text} of every code block of the page whose first line names a file."""
    files = {}
    for name, body in BLOCK.findall(PAGE.read_text()):
        first = f"# {name}\n" if name.endswith(".py") else ""  # a YAML file keeps its own comment lines
        files[name] = first + body if name.endswith(".py") else body
    return files


@pytest.fixture
def plugins(tmp_path):
    """The page's files written to ``tmp_path / "plug"``; returns (folder, run(*args))."""
    plug = tmp_path / "plug"
    for name, text in page_files().items():
        (plug / name).parent.mkdir(parents=True, exist_ok=True)
        (plug / name).write_text(text)

    def run(*args, check=None):
        search = f"hydra.searchpath=[file://{plug / 'myconf'}]"
        return run_here("train", search, *args, cwd=tmp_path, env={"PYTHONPATH": str(plug)}, check=check)

    return plug, run


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_the_page_holds_each_addition_as_a_class_and_a_yaml_file():
    files = page_files()
    for cls, yaml in [
        ("rf.py", "myconf/neuron/rf.yaml"),
        ("triplet.py", "myconf/learning/triplet_stdp.yaml"),
        ("cifar10.py", "myconf/dataset/cifar10.yaml"),
        ("heatmap.py", "myconf/logger/heatmap.yaml"),
    ]:
        assert cls in files and yaml in files, sorted(files)


def test_a_resonate_and_fire_neuron_trains_and_checks_its_parameters(plugins, tmp_path):
    _, run = plugins
    run("neuron=rf", *TINY, "epochs=1", "hydra.run.dir=rf", check=True)
    m = metrics(tmp_path / "rf")
    assert m["status"] == "completed" and 0.0 <= m["final"]["test_acc"] <= 1.0
    one_error(run("neuron=rf", "neuron.omega=0", *TINY, "hydra.run.dir=bad"), "omega must be > 0.0")


STDP_SIZES = [*TINY, "epochs=1", "learning.local_epochs=1", "network.hidden=[32]"]


def test_triplet_stdp_is_pair_stdp_when_a3_is_zero_and_differs_otherwise(plugins, tmp_path):
    _, run = plugins
    run("learning=stdp", *STDP_SIZES, "hydra.run.dir=pair", check=True)
    run("learning=triplet_stdp", "learning.a3=0", *STDP_SIZES, "hydra.run.dir=a3_0", check=True)
    run("learning=triplet_stdp", "learning.a3=0.5", *STDP_SIZES, "hydra.run.dir=a3", check=True)
    pair, same, triplet = (metrics(tmp_path / d)["final"] for d in ("pair", "a3_0", "a3"))
    assert (same["test_loss"], same["test_acc"]) == (pair["test_loss"], pair["test_acc"])
    assert triplet["test_loss"] != pair["test_loss"]


def write_cifar(root: Path, n_batch: int = 40, n_test: int = 30) -> None:
    """A small CIFAR-10 in the python version's format: each class a different mean colour."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}", n_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        labels = rng.integers(0, 10, n)
        data = np.clip(rng.normal(labels[:, None] * 25.0, 20.0, (n, 3072)), 0, 255).astype(np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels.tolist()}, f)


def test_a_cifar10_dataset_trains_a_conv_net_and_names_missing_files(plugins, tmp_path):
    _, run = plugins
    write_cifar(tmp_path / "cifar")
    args = ["dataset=cifar10", f"dataset.root={tmp_path / 'cifar'}", "dataset.val=40", "network=conv"]
    sizes = ["T=4", "batch_size=20", "epochs=1", "progress=false", "logger.rasters=false", "network.channels=[4,8]"]
    p = run(*args, "encoder=poisson", *sizes, "hydra.run.dir=cifar", check=True)
    assert metrics(tmp_path / "cifar")["status"] == "completed"
    assert "160 train / 40 val / 30 test" in p.stdout + p.stderr  # 5 x 40 images, 40 of them held out
    line = one_error(run(*args[:1], f"dataset.root={tmp_path / 'none'}", "network=conv", *sizes, "hydra.run.dir=no"))
    assert "cifar-10-batches-py/data_batch_1 is missing" in line and "dataset=synthetic" in line


def test_a_figure_of_ones_own_joins_the_built_in_ones_in_tensorboard(plugins, tmp_path):
    _, run = plugins
    run("logger=heatmap", *TINY, "epochs=1", "logger.rasters=true", "hydra.run.dir=fig", check=True)
    (events,) = (tmp_path / "fig").glob("events.out.tfevents.*")
    tags = EventAccumulator(str(events), size_guidance={"images": 0}).Reload().Tags()["images"]
    assert "heatmap/layer1" in tags and "raster/layer1" in tags
    assert tags.index("heatmap/layer1") > tags.index("confusion/validation")
    p = run("+logger.figures=[heatmap.nothing]", *TINY, "hydra.run.dir=bad")
    one_error(p, "logger: heatmap.nothing in figures cannot be imported")
