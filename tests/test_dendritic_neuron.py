"""One dendritic neuron: DendLIF / DendIF are presets of DendriticNeuron(wiring, soma), stochastic
firing works with every soma, the fast paths equal the reference step for any soma, and the old
module paths of the flat layout are the new modules."""

import importlib
import pathlib

import pytest
import torch
from hydra.utils import get_object

import dendsn
from dendsn.dendritic import DendIF, DendLIF, Dendritic, DendriticNeuron
from dendsn.dendritic.compartments import Active
from dendsn.dendritic.wiring import KTo1, Segregated, Tree
from dendsn.neurons.adaptive import AdEx
from dendsn.neurons.lif import IF, LIF
from dendsn.neurons.nonlinear import QIF
from dendsn.surrogate import StochasticFiring

CONF = pathlib.Path(__file__).resolve().parents[1] / "conf"


def _run(n, x, seed=0):
    torch.manual_seed(seed)
    xx = x.clone().requires_grad_()
    s = torch.cat([n(xx[:3]), n(xx[3:])])
    w = torch.randn(s.shape, generator=torch.Generator().manual_seed(5), dtype=s.dtype)
    loss = (s * w).sum() + (n.v**2).sum() + n.v_dend.sum()
    params = [p for p in n.parameters() if p.requires_grad]
    return (s, n.v, n.v_dend, *torch.autograd.grad(loss, [xx] + params))


PRESETS = {
    "dend_lif": (
        lambda **k: DendLIF(Tree([-1, 0, 0, 1]), tau=4.0, v_reset=-0.5, **k),
        lambda **k: DendriticNeuron(Tree([-1, 0, 0, 1]), LIF(4.0, v_reset=-0.5), **k),
    ),
    "dend_lif_no_decay_soft": (
        lambda **k: DendLIF(KTo1(2, 2), decay_input=False, v_reset=None, **k),
        lambda **k: DendriticNeuron(KTo1(2, 2), LIF(decay_input=False, v_reset=None), **k),
    ),
    "dend_if": (
        lambda **k: DendIF(Segregated(3), v_threshold=0.8, **k),
        lambda **k: DendriticNeuron(Segregated(3), IF(v_threshold=0.8), **k),
    ),
}
OPTIONS = {
    "plain": {},
    "bap": {"bap_psi": 0.3},
    "active_learn_phi": {"compartment": Active(activation="sigmoid"), "learn_phi": True},
    "stochastic": {"firing": StochasticFiring("logistic", 0.5, 5.0, False)},
    "stochastic_bap": {"firing": StochasticFiring("exponential", 0.5, 5.0, False), "bap_psi": -0.2},
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_are_the_dendritic_neuron_with_that_soma(preset, option):
    # (tau and v_reset exact in binary: DendLIF's input gain is 1/tau, the LIF soma's du/dx, equal here)
    make_preset, make_general = PRESETS[preset]
    a, b = make_preset(**OPTIONS[option]), make_general(**OPTIONS[option])
    assert isinstance(a, DendriticNeuron) and list(a.state_dict()) == list(b.state_dict())
    x = torch.rand(6, 2, 4 * a.inputs_per_neuron, dtype=torch.float64) * 4 - 0.5
    for p, q in zip(_run(a.double(), x), _run(b.double(), x)):
        assert torch.equal(p, q)


@pytest.mark.parametrize("bap_psi", [0.0, 0.3])
@pytest.mark.parametrize("soma", [AdEx, QIF, LIF], ids=lambda c: c.__name__)
def test_stochastic_firing_with_any_soma(soma, bap_psi):
    def make(kind):
        firing = None if kind is None else StochasticFiring(kind, 0.5, 5.0, False)
        return Dendritic(Segregated(2), soma(), bap_psi=bap_psi, firing=firing).double()

    x = torch.rand(8, 3, 10, dtype=torch.float64) * 3
    s1, s2 = _run(make("logistic"), x, seed=1)[0], _run(make("logistic"), x, seed=1)[0]
    assert torch.equal(s1, s2) and set(s1.unique().tolist()) <= {0.0, 1.0}  # seeded: reproducible 0/1 spikes
    assert not torch.equal(s1, _run(make("logistic"), x, seed=2)[0])  # and drawn
    assert isinstance(make("exponential").soma.surrogate, StochasticFiring)


@pytest.mark.parametrize("soma", [AdEx, QIF], ids=lambda c: c.__name__)
@pytest.mark.parametrize("wire", [Segregated(3), KTo1(2, 1), Tree([-1, 0, 0])], ids=lambda w: type(w).__name__)
def test_fast_path_equals_reference_for_any_soma(soma, wire):
    x = torch.rand(6, 2, 4 * wire.n_input, dtype=torch.float64) * 6 - 0.5
    outs = []
    for reference in (False, True):
        n = Dendritic(wire, soma(), compartment=Active(activation="sigmoid") if type(wire) is KTo1 else None).double()
        n.store_seq = reference  # store_seq takes the reference path
        outs.append(_run(n, x))
    assert torch.equal(outs[0][0], outs[1][0])
    for a, b in zip(outs[0][1:], outs[1][1:]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


OLD = {
    "neurons": "dendsn.neurons",
    "nonlinear": "dendsn.neurons.nonlinear",
    "adaptive": "dendsn.neurons.adaptive",
    "compartments": "dendsn.dendritic.compartments",
    "wiring": "dendsn.dendritic.wiring",
    "dendrite": "dendsn.dendritic.dendrite",
    "dendritic": "dendsn.dendritic",
    "soma": "dendsn.kernels.soma",
    "synapses": "dendsn.layers.synapses",
    "competition": "dendsn.layers.competition",
    "recurrent": "dendsn.layers.recurrent",
    "networks": "dendsn.networks",
    "calibrate": "dendsn.networks.calibrate",
    "events": "dendsn.events",
}


@pytest.mark.parametrize("old", sorted(OLD))
def test_old_module_paths_are_the_new_modules(old):
    assert importlib.import_module(f"dendsn.{old}") is importlib.import_module(OLD[old])
    assert getattr(dendsn, old) is importlib.import_module(OLD[old])


def test_every_target_of_the_config_tree_resolves():
    targets = {
        line.split(":", 1)[1].strip()
        for f in CONF.rglob("*.yaml")
        for line in f.read_text().splitlines()
        if line.strip().startswith("_target_: dendsn.")
    }
    assert targets
    for t in sorted(targets):
        assert callable(get_object(t)), t
