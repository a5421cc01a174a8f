"""Any point neuron as the soma of a dendritic neuron (`dendritic.Dendritic`, `neuron=dendritic neuron/soma=...`).

The generic path (a soma's own multi-step on the dendrite's read-out, with feedback = Phi) is checked
against the fused path of `DendLIF` on the same LIF soma; a refractory soma against its definition.
"""

import json
from functools import partial

import pytest
import torch
from conftest import TINY, one_error

from dendsn import compartments, dendritic, neurons, wiring
from dendsn_cli.train import spiking_layers

WIRINGS = [wiring.Segregated(3), wiring.KTo1(2, 2), wiring.Chain(3)]


def _grads(m, x):
    s = m(x)
    w = torch.linspace(-1, 1, s.numel()).view_as(s)
    (g,) = torch.autograd.grad((s * w).sum(), x)
    return s, g, m.v


@pytest.mark.parametrize("wire", WIRINGS, ids=lambda w: type(w).__name__)
@pytest.mark.parametrize("active", [False, True])
@pytest.mark.parametrize("forward_mode", ["voltage_difference", "activation"])
@pytest.mark.parametrize("bap_psi", [0.0, -0.3])
def test_lif_soma_equals_dend_lif_on_both_paths(wire, active, forward_mode, bap_psi):
    """Dendritic(soma=LIF) is DendLIF: on the linear fast path, and on the generic path (the soma's own
    multi-step with the voltage-difference feedback, or the joint step loop with a back-propagating spike)."""
    torch.manual_seed(0)
    kw = dict(
        compartment=compartments.Active(activation="sigmoid") if active else None,
        forward_mode=forward_mode,
        bap_psi=bap_psi,
    )
    ref = dendritic.DendLIF(wire, tau=3.0, **kw)
    fast = dendritic.Dendritic(wire, soma=partial(neurons.LIF, tau=3.0), **kw)
    generic = dendritic.Dendritic(wire, soma=partial(neurons.LIF, tau=3.0), **kw)
    generic.linear_soma = False
    assert fast.linear_soma
    x = (torch.randn(7, 4, 5 * wire.n_input) * 2).requires_grad_()
    s0, g0, v0 = _grads(ref, x)
    for m in (fast, generic):
        s, g, v = _grads(m, x)
        assert torch.equal(s, s0)
        torch.testing.assert_close(v, v0, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(g, g0, rtol=1e-4, atol=1e-6)


def test_generic_soma_single_step_equals_multi_step_and_keeps_dendritic_state():
    torch.manual_seed(1)
    x = torch.randn(6, 3, 4 * 3) * 2
    multi = dendritic.Dendritic(wiring.Segregated(3), soma=partial(neurons.LIF, refractory=1))
    single = dendritic.Dendritic(wiring.Segregated(3), soma=partial(neurons.LIF, refractory=1), step_mode="s")
    s_m = multi(x)
    s_s = torch.stack([single(x_t) for x_t in x])
    assert torch.equal(s_m, s_s)
    torch.testing.assert_close(multi.v, single.v)
    torch.testing.assert_close(multi.v_dend, single.v_dend)
    multi.reset()
    assert multi.v is None and multi.soma.state is None


def test_refractory_soma_is_silent_and_held_for_its_period():
    """A strong constant drive: with refractory=R there are exactly R silent steps after each spike,
    the soma sits at v_reset during them, and the period changes nothing else (R=0 fires every step)."""
    x = torch.full((12, 1, 3), 4.0)
    for R in (0, 1, 3):
        m = dendritic.Dendritic(wiring.Segregated(3), soma=partial(neurons.IF, refractory=R))
        m.store_seq = True
        s = m(x)[:, 0, 0].tolist()
        fired = [t for t, v in enumerate(s) if v]
        assert fired[0] == 0 and all(b - a == R + 1 for a, b in zip(fired, fired[1:])), (R, s)
        if R:
            held = [m.v_seq[t, 0, 0].item() for f in fired for t in range(f + 1, min(f + R + 1, 12))]
            assert held and all(v == 0.0 for v in held)


def test_soma_is_part_of_its_layer_not_a_layer():
    from dendsn.networks import MLP

    net = MLP(
        [10],
        3,
        neuron=partial(dendritic.Dendritic, wiring.Segregated(2), soma=partial(neurons.PLIF)),
        readout=partial(neurons.LIF),
        hidden=[4, 5],
    )
    layers = spiking_layers(net)
    assert [n for n, _ in layers] == ["layer1", "layer2", "readout"]
    assert all(not isinstance(m, neurons.PLIF) for _, m in layers[:2])
    # the soma's parameter is the neuron's, trained and saved with it
    assert "layers.1.soma.w" in net.state_dict()


def test_bad_soma_is_one_line():
    with pytest.raises(ValueError, match="soma must be a point neuron"):
        dendritic.Dendritic(wiring.Segregated(2), soma=partial(dendritic.DendLIF, wiring.Segregated(2)))
    with pytest.raises(ValueError, match="refractory must be a whole number"):
        neurons.LIF(refractory=-1)


def test_cli_dendritic_neuron_with_a_chosen_soma_trains(dendsn_here, tmp_path):
    run = tmp_path / "run"
    p = dendsn_here(
        "train",
        *TINY,
        "epochs=1",
        "neuron=dendritic",
        "neuron/soma=plif",
        "neuron.soma.refractory=1",
        f"hydra.run.dir={run}",
    )
    assert p.returncode == 0, p.stderr
    m = json.loads((run / "metrics.json").read_text())
    assert m["history"][-1]["test_acc"] > 0
    cfg = (run / ".hydra" / "config.yaml").read_text()
    assert "dendsn.neurons.PLIF" in cfg and "refractory: 1" in cfg


def test_soma_choice_errors_are_one_line(dendsn_here):
    one_error(
        dendsn_here("train", "neuron/soma=lif"), "neuron/soma is chosen inside neuron=dendritic", "add neuron=dendritic"
    )
    one_error(
        dendsn_here("train", "neuron=dendritic", "neuron/soma=bogus"), "neuron/soma=bogus is not an option", "lif"
    )
    one_error(dendsn_here("train", "neuron=dendritic", "neuron/soma=dend_lif"), "is not an option of 'neuron/soma'")
    one_error(
        dendsn_here("train", "neuron=dendritic", "neuron.soma.refractory=-2"), "refractory must be a whole number", "-2"
    )
