"""Dendritic neurons through the CLI: every wiring and variant trains; bad combinations are one line."""

import re

import pytest
import torch
from conftest import TINY
from test_cli import metrics, one_error_line

# (options, what the composed config must contain)
VARIANTS = [
    (["wiring=segregated"], "dendsn.wiring.Segregated"),
    (["wiring=kto1"], "dendsn.wiring.KTo1"),
    (["wiring=chain", "wiring.bidirectional=true"], "dendsn.wiring.Chain"),
    (["wiring=tree", "wiring.parents=[-1,0,0]"], "dendsn.wiring.Tree"),
    (["neuron=dend_if"], "dendsn.dendritic.DendIF"),
    (["neuron.compartment.activation=sigmoid"], "activation: sigmoid"),
    (["neuron.compartment.activation=threshold_linear", "wiring=kto1"], "activation: threshold_linear"),
    (["neuron.forward_mode=activation"], "forward_mode: activation"),
    (["neuron.bap_psi=0.3", "neuron.v_reset=null"], "bap_psi: 0.3"),
    (["neuron.firing.kind=logistic"], "kind: logistic"),
    (["neuron.learn_phi=true", "neuron.learn_g=true", "wiring=kto1"], "learn_phi: true"),
]


@pytest.mark.parametrize("opts,expect", VARIANTS, ids=[" ".join(o) for o, _ in VARIANTS])
def test_every_dendritic_variant_trains_through_the_cli(dendsn_here, tmp_path, opts, expect):
    dendsn_here("train", *TINY, "epochs=1", *opts, "hydra.run.dir=run", check=True)
    assert expect in (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    m = metrics(tmp_path / "run")
    assert m["status"] == "completed" and m["final"]["train_loss"] == m["final"]["train_loss"]  # not NaN


def test_the_default_is_a_dendritic_mlp_with_segregated_wiring(dendsn_here):
    p = dendsn_here("train", "--cfg", "job", check=True)
    assert "_target_: dendsn.dendritic.DendLIF" in p.stdout
    assert "_target_: dendsn.wiring.Segregated" in p.stdout
    assert re.search(r"^T: 20$", p.stdout, re.M)
    listing = dendsn_here("list", "neuron", "wiring", check=True).stdout
    assert re.search(r"\* dend_lif", listing) and re.search(r"\* segregated", listing)


def test_dendritic_conv_net_on_images(dendsn_here, tmp_path):
    from test_data import write_fake_mnist

    write_fake_mnist(tmp_path / "data", n_train=40, n_test=20)
    dendsn_here(
        "train",
        "dataset=mnist",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.val=10",
        "network=conv",
        "wiring=kto1",
        "network.channels=[4,8]",
        "network.fc=16",
        "epochs=1",
        "T=3",
        "batch_size=20",
        "progress=false",
        "hydra.run.dir=run",
        check=True,
    )
    ck = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    # kto1 (k=3, n_output=2) has 6 input compartments: conv channels = 6 * C
    assert ck["model"]["layers.0.module.weight"].shape[0] == 6 * 4


def test_the_presets_compose_the_comparison(dendsn_here):
    dend = dendsn_here("train", "--cfg", "job", "experiment=fmnist_dend_mlp", check=True).stdout
    point = dendsn_here("train", "--cfg", "job", "experiment=fmnist_point_mlp", check=True).stdout
    assert "name: fashion_mnist" in dend and "name: fashion_mnist" in point
    assert "dendsn.dendritic.DendLIF" in dend and "n_compartments: 4" in dend and "- 256" in dend
    assert "dendsn.dendritic" not in point and "- 1024" in point  # 784 x (256 x 4) = 784 x 1024 synapses


ERRORS = [
    (["neuron=lif", "wiring=kto1"], "wiring applies to dendritic neurons only"),
    (["wiring=tree", "wiring.parents=[1,0]"], "cycle"),
    (["wiring=tree", "wiring.parents=[-1,5]"], "parents"),
    (["wiring=kto1", "wiring.k=0"], "k"),
    (["wiring=bogus"], "wiring=bogus is not an option of 'wiring'; available: chain, kto1, segregated, tree"),
    (["neuron.forward_mode=sideways"], "forward_mode must be"),
    (["neuron.compartment.tau_d=1.0"], "tau_d"),
    (["neuron.compartment.activation=cubic"], "activation must be"),
    (["neuron.firing.kind=poisson"], "firing kind must be"),
    (["neuron.phi=[1.0,2.0]"], "phi has 2 values but the wiring has 4 output compartments"),
]


@pytest.mark.parametrize("args,expected", ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_bad_dendritic_settings_are_one_line(dendsn_here, args, expected):
    assert expected in one_error_line(dendsn_here("train", *args, "progress=false", "hydra.run.dir=run"))
