"""Recurrent hidden layers (network.recurrent): the step loop against hand-written equations, gradients,
fixed cross-inhibition, the feed-forward path untouched, every neuron config, the runner's hooks, and
real CLI runs that train, resume, and refuse local rules."""

import functools
import json

import pytest
import torch
from conftest import TINY, one_error

from dendsn.calibrate import calibrate_rates, layer_pairs
from dendsn.compartments import Passive
from dendsn.dendritic import DendLIF
from dendsn.networks import MLP
from dendsn.neurons import LIF, SpikingModule
from dendsn.recurrent import RecurrentSynapse
from dendsn.wiring import Segregated

T, B, N_IN, S, C = 9, 5, 12, 7, 3


def spikes_in(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, N_IN, generator=g, dtype=torch.float64) < 0.4).double()


def lif_steps(I_seq, tau, rec=None):
    """LIF, decay_input, hard reset to 0, threshold 1, by hand; with ``rec`` [S, S] the spikes of step t-1
    add rec @ s to the input of step t."""
    v = torch.zeros_like(I_seq[0])
    s = torch.zeros_like(I_seq[0])
    out = []
    for I in I_seq:
        if rec is not None:
            I = I + s @ rec.T
        h = v + (I - v) / tau
        s = (h >= 1.0).double()
        v = h * (1 - s)
        out.append(s)
    return torch.stack(out)


def readout_by_hand(net, hidden_spikes):
    lin = net.layers[-2]
    return lif_steps(hidden_spikes @ lin.weight.T + lin.bias, 2.0)


def test_point_layer_equals_a_hand_written_step_loop():
    torch.manual_seed(0)
    net = MLP([N_IN], C, functools.partial(LIF, tau=3.0), LIF, hidden=[S], recurrent=True, recurrent_init=2.0).double()
    with torch.no_grad():
        net.layers[0].weight.mul_(4.0)  # a layer that fires, so the recurrence acts
    x = spikes_in()
    W_rec = net.recurrent["1"].weight.detach()
    assert W_rec.shape == (S, S) and W_rec.abs().sum() > 0
    ff = x @ net.layers[0].weight.detach().T + net.layers[0].bias.detach()
    hidden = lif_steps(ff, 3.0, W_rec)
    assert hidden.sum() > 0 and not torch.equal(hidden, lif_steps(ff, 3.0))  # the recurrence changes the spikes
    with torch.no_grad():
        out = net(x)
        assert torch.equal(out, readout_by_hand(net, hidden))


def test_dendritic_layer_equals_a_hand_written_step_loop():
    """Segregated passive compartments (tau_d = 2, input not scaled), voltage-difference forward with
    phi = 1/K, LIF soma: the recurrent current enters compartment k of neuron s as feature s*K + k."""
    K, tau, tau_d = 3, 2.0, 2.0
    torch.manual_seed(1)
    cell = functools.partial(
        DendLIF, wiring=Segregated(K), tau=tau, compartment=Passive(tau_d=tau_d, decay_input=False)
    )
    net = MLP([N_IN], C, cell, LIF, hidden=[S], recurrent=True, recurrent_init=2.0).double()
    with torch.no_grad():
        net.layers[0].weight.mul_(4.0)
    x = spikes_in(1)
    W_rec = net.recurrent["1"].weight.detach()  # [S*K, S]
    assert W_rec.shape == (S * K, S)
    ff = x @ net.layers[0].weight.detach().T + net.layers[0].bias.detach()  # [T, B, S*K]
    v, vd, s, spikes = torch.zeros(B, S), torch.zeros(B, S, K), torch.zeros(B, S), []
    v, vd, s = v.double(), vd.double(), s.double()
    for t in range(T):
        I = (ff[t] + s @ W_rec.T).reshape(B, S, K)  # neuron-major: [B, S, K]
        vd = vd - vd / tau_d + I
        J = (vd - v.unsqueeze(-1)).sum(-1) / K
        h = v + (J - v) / tau
        s = (h >= 1.0).double()
        v = h * (1 - s)
        spikes.append(s)
    hidden = torch.stack(spikes)
    assert hidden.sum() > 0
    with torch.no_grad():
        assert torch.equal(net(x), readout_by_hand(net, hidden))


def test_gradients_reach_the_learned_recurrent_weights_from_a_zero_start():
    torch.manual_seed(0)
    net = MLP([N_IN], C, LIF, LIF, hidden=[S], recurrent=True)
    with torch.no_grad():
        net.layers[0].weight.mul_(4.0)
        net.layers[2].weight.mul_(4.0)
    W = net.recurrent["1"].weight
    assert isinstance(W, torch.nn.Parameter) and not W.detach().any()
    net(spikes_in().float()).sum().backward()
    assert W.grad is not None and W.grad.abs().sum() > 0


def test_fixed_inhibition_is_a_buffer_that_training_never_moves():
    torch.manual_seed(0)
    net = MLP([N_IN], C, LIF, LIF, hidden=[S], recurrent="inhibition", inhibition=0.5)
    rec = net.recurrent["1"]
    expected = -0.5 * (1 - torch.eye(S))
    assert torch.equal(rec.weight, expected) and not rec.weight.requires_grad
    assert all(p is not rec.weight for p in net.parameters())
    assert "recurrent.1.weight" in net.state_dict()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    x = spikes_in().float() * 3
    for _ in range(3):
        net.reset()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x).sum(0), torch.arange(B) % C).backward()
        opt.step()
    assert torch.equal(rec.weight, expected)
    # dendritic: every input compartment of neuron i gets -inhibition * s_j (feature i*K + k)
    dend = RecurrentSynapse(S, 2, "inhibition", 0.25)
    assert torch.equal(dend.weight, (-0.25 * (1 - torch.eye(S))).repeat_interleave(2, dim=0))


def test_feed_forward_net_is_unchanged():
    """recurrent=false: the plain Sequential, no new state_dict keys; a zero W_rec gives the same spikes as the
    multi-step path (the step loop agrees with the neurons' fused kernels)."""
    torch.manual_seed(0)
    ff = MLP([N_IN], C, LIF, LIF, hidden=[S, S])
    torch.manual_seed(0)
    rec = MLP([N_IN], C, LIF, LIF, hidden=[S, S], recurrent=True)
    assert len(ff.recurrent) == 0 and not any("recurrent" in k for k in ff.state_dict())
    assert set(rec.state_dict()) == set(ff.state_dict()) | {"recurrent.1.weight", "recurrent.3.weight"}
    for m in (ff, rec):
        with torch.no_grad():
            for lin, c in ((m.layers[0], 5.0), (m.layers[2], 5.0), (m.layers[4], 20.0)):
                lin.weight.mul_(c)
    x = spikes_in().float()
    out = ff(x)
    ff.reset()
    assert torch.equal(out, ff.layers(x))
    assert out.sum() > 0 and torch.equal(rec(x), out)


def neuron_options():
    from importlib import resources

    folder = resources.files("dendsn_conf").joinpath("neuron")  # not neuron=theta: event-driven only
    return sorted(
        f.name[:-5] for f in folder.iterdir() if f.name.endswith(".yaml") and "dendsn.events." not in f.read_text()
    )


def test_every_neuron_option_runs_a_recurrent_layer():
    """Each conf/neuron option, instantiated as the runner does, runs single steps on [B, F]: with a zero
    W_rec the step loop gives the spikes of its multi-step pass; with inhibition the network still runs."""
    from hydra.utils import instantiate

    from dendsn_cli.config import compose

    for name in neuron_options():
        cfg = compose([f"neuron={name}", f"T={T}"])
        neuron = instantiate(cfg.neuron)
        if type(neuron()).single_step is SpikingModule.single_step:  # multi-step only (PSN): refused
            with pytest.raises(ValueError, match="has no single step, so it cannot sit in a recurrent layer"):
                MLP([N_IN], C, neuron, LIF, hidden=[S], recurrent=True)
            continue
        nets = []
        for recurrent in (False, True, "inhibition"):
            torch.manual_seed(0)
            net = MLP([N_IN], C, neuron, LIF, hidden=[S], recurrent=recurrent).eval()
            with torch.no_grad():
                net.layers[0].weight.mul_(5.0)
            nets.append(net)
        x = spikes_in().float()
        with torch.no_grad():
            hidden = [
                net.layers[:2](x) if i == 0 else net.recurrent["1"].run(net.layers[1], net.layers[0](x))
                for i, net in enumerate(nets)
            ]
        assert hidden[0].shape == (T, B, S) and hidden[0].sum() > 0, name
        torch.testing.assert_close(hidden[1], hidden[0], msg=name)
        assert hidden[2].shape == (T, B, S) and torch.isfinite(hidden[2]).all(), name


def test_runner_hooks_and_init_rate_see_the_whole_sequence():
    """The neuron module is called once per forward with [T, B, ...]: rasters, traces (store_seq) and
    firing rates of the runner's Monitor, and init_rate's calibration, work as for a feed-forward layer."""
    from dendsn_cli.train import Monitor, spiking_layers

    torch.manual_seed(0)
    net = MLP([N_IN], C, LIF, LIF, hidden=[S], recurrent=True, recurrent_init=1.0)
    x = spikes_in().float()
    pairs = layer_pairs(net)
    assert [type(n) for _, n, _ in pairs] == [LIF, LIF]
    (cal,) = calibrate_rates(net, x, 0.2, skip={1})
    assert 0.2 / 1.25 <= cal.rate_after <= 0.2 * 1.25
    monitor = Monitor(spiking_layers(net))
    monitor.start(record=True)
    net.reset()
    with torch.no_grad():
        net(x)
    rates = monitor.stop()
    assert set(rates) == {"rate/layer1", "rate/readout"} and abs(rates["rate/layer1"] - cal.rate_after) < 1e-6
    assert monitor.rasters["layer1"].shape == (T, 3, S)
    assert monitor.traces["layer1"]["v"].shape[0] == T
    for h in monitor.handles:
        h.remove()


def test_conv_refuses_recurrent():
    from dendsn.networks import ConvNet

    with pytest.raises(ValueError, match="network=conv has no recurrent layers"):
        ConvNet([1, 8, 8], C, LIF, LIF, recurrent=True)


RUN = [
    *TINY,
    "neuron=lif",
    "lr_schedule=none",
    "network.recurrent=true",
    "network.recurrent_init=1.0",
    "dataset.n_train=200",
    "dataset.val=50",
    "dataset.n_test=50",
    "T=8",
    "network.hidden=[24]",
]


def test_a_local_rule_with_recurrence_is_one_line(dendsn_here):
    p = dendsn_here("train", *RUN, "learning=semi_stdp")
    one_error(p, "learning=semi_stdp", "recurrent", "learning=bptt")


def test_state_dict_holds_the_recurrent_weights():
    torch.manual_seed(0)
    a = MLP([N_IN], C, LIF, LIF, hidden=[S], recurrent=True, recurrent_init=2.0)
    torch.manual_seed(1)
    b = MLP([N_IN], C, LIF, LIF, hidden=[S], recurrent=True, recurrent_init=2.0)
    b.load_state_dict(a.state_dict())
    x = spikes_in().float() * 3
    assert torch.equal(a.recurrent["1"].weight, b.recurrent["1"].weight) and torch.equal(a(x), b(x))


def test_recurrent_run_trains_and_resumes(dendsn_here, tmp_path):
    assert dendsn_here("train", *RUN, "epochs=1", "hydra.run.dir=run").returncode == 0
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    W1 = torch.load(last, weights_only=False)["model"]["recurrent.1.weight"]
    resumed = dendsn_here("train", *RUN, "resume=run", "hydra.run.dir=run")
    assert resumed.returncode == 0 and "resuming" in resumed.stderr
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "completed" and [r["epoch"] for r in m["history"]] == [1, 2]
    assert m["history"][1]["train_loss"] < m["history"][0]["train_loss"]  # it learns
    W2 = torch.load(last, weights_only=False)["model"]["recurrent.1.weight"]
    assert W1.shape == W2.shape == (24, 24) and not torch.equal(W1, W2)  # W_rec is trained
