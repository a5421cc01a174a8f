"""Declared capabilities: the config's rules between groups read what a class declares (what a dataset
provides, what an encoder accepts, whether a part is event-based), never its class path. A user's plug-in
dataset and encoder, defined outside the package, pass and fail the same rules as the built-in ones, with
the same one-line message."""

from __future__ import annotations

import textwrap

import pytest
from conftest import one_error
from omegaconf import OmegaConf

from dendsn_cli.config import compose, declared, validate

PLUGINS = '''
    """A user's own data and encoders: no dendsn import, only the declarations the config reads."""
    from torch import nn


    class PlugImages:
        """Static images of the user's own (any keys of the option it replaces)."""

        provides = "images"

        def __init__(self, **options):
            self.options = options


    class PlugSpikes(PlugImages):
        provides = "spike_trains"


    class PlugEvents(PlugImages):
        provides = "event_frames"


    class PlugRate(nn.Module):
        """Rate coding: encodes images and passes time-major spikes through, like encoder=poisson."""

        name = "plug_rate"
        accepts = ("images", "spike_trains")

        def __init__(self, rate_scale: float = 1.0):
            super().__init__()


    class PlugCurrent(nn.Module):
        """Any input as it is, like encoder=direct."""

        name = "plug_current"
        accepts = ("images", "spike_trains", "sequences", "event_frames")


    class PlugTimes(nn.Module):
        """Continuous spike times for the event network, like encoder=binned_latency."""

        accepts = ("images",)
        event_based = True

        def __init__(self, **options):
            super().__init__()
'''


@pytest.fixture
def plug(tmp_path, monkeypatch):
    """The plug-in module ``dendsn_user_plugins``, written outside the package and put on sys.path."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "dendsn_user_plugins.py").write_text(textwrap.dedent(PLUGINS))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(__import__("sys").modules, "dendsn_user_plugins", raising=False)
    return "dendsn_user_plugins"


def refused(run, *args) -> str:
    return one_error(run("train", *args, "progress=false"))


def test_plugin_image_dataset_passes_where_mnist_does(plug):
    for extra in (["encoder=poisson"], ["encoder=latency"], ["experiment=fmnist_exact"]):
        validate(compose(["dataset=mnist", *extra]))
        validate(compose(["dataset=mnist", *extra, f"dataset._target_={plug}.PlugImages"]))


def test_plugin_event_frames_refuse_poisson_like_nmnist(plug, dendsn_here, tmp_path):
    args = ["dataset=nmnist", "encoder=poisson", f"dataset.root={tmp_path / 'nowhere'}"]
    builtin = refused(dendsn_here, *args)
    assert "encoder=poisson does not apply to dataset=nmnist" in builtin
    assert refused(dendsn_here, *args, f"dataset._target_={plug}.PlugEvents") == builtin
    validate(compose([*args[:1], "encoder=direct", f"dataset._target_={plug}.PlugEvents"]))


def test_plugin_spike_trains_refused_by_the_event_network_like_synthetic(plug, dendsn_here):
    builtin = refused(dendsn_here, "experiment=fmnist_exact", "dataset=synthetic")
    assert "dataset=synthetic does not apply to the event network" in builtin
    assert (
        refused(dendsn_here, "experiment=fmnist_exact", "dataset=synthetic", f"dataset._target_={plug}.PlugSpikes")
        == builtin
    )


def test_plugin_rate_encoder_on_row_sequences_fails_like_poisson(plug, dendsn_here):
    rows = ["dataset=mnist", "dataset.sequential=rows", "T=28", "encoder=poisson"]
    builtin = refused(dendsn_here, *rows)
    assert "encoder=poisson does not apply to dataset.sequential=rows" in builtin
    mine = refused(dendsn_here, *rows, f"encoder._target_={plug}.PlugRate")
    assert mine == builtin.replace("encoder=poisson", "encoder=plug_rate")
    validate(compose([*rows[:3], "encoder=direct", f"encoder._target_={plug}.PlugCurrent"]))  # like direct


def test_plugin_event_based_encoder_belongs_to_the_event_network(plug, dendsn_here):
    builtin = refused(dendsn_here, "encoder=binned_latency")
    assert "encoder=binned_latency belongs to the event-driven theta network" in builtin
    assert refused(dendsn_here, "encoder=binned_latency", f"encoder._target_={plug}.PlugTimes") == builtin


def test_library_classes_declare_through_the_lookup(plug):
    theta = OmegaConf.create({"_target_": "dendsn.events.Theta"})
    lif = OmegaConf.create({"_target_": "dendsn.neurons.LIF"})
    assert declared(theta, "event_based", False) is True and declared(lif, "event_based", False) is False
    assert declared(OmegaConf.create({"_target_": f"{plug}.PlugTimes"}), "event_based", False) is True
    assert declared(OmegaConf.create({"_target_": "dendsn_cli.data.TonicEvents"}), "provides") == "event_frames"


def test_plugin_from_pythonpath_in_a_real_process(tmp_path, dendsn):
    """The console script, the plug-in found through PYTHONPATH as a user would set it."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "dendsn_user_plugins.py").write_text(textwrap.dedent(PLUGINS))
    p = dendsn(
        "train",
        "dataset=nmnist",
        "encoder=poisson",
        f"dataset.root={tmp_path / 'nowhere'}",
        "dataset._target_=dendsn_user_plugins.PlugEvents",
        env={"PYTHONPATH": str(folder)},
    )
    one_error(p, "encoder=poisson does not apply to dataset=nmnist", "use encoder=direct")
