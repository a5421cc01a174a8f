"""The `synapse` group: masks, the exponential current filter, bounds and Dale's law, for backprop and for
every local rule; the per-sample dropout mask; the Conv1d network. The real math on tiny tensors, then
two short real runs of the CLI."""

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, one_error
from torch import nn

from dendsn.calibrate import calibrate_rates, layer_pairs
from dendsn.networks import MLP, Conv1dNet, ConvNet, SampleDropout, TimeDistributed
from dendsn.neurons import LIF
from dendsn.synapses import ExpFilter, Synapse, SynapticConv2d, SynapticLinear
from dendsn_cli.learning import BPTT, DPP, RSTDP, STDP, Readout, SemiSTDP
from dendsn_cli.learning.base import clamp_weights


def lif(**kw):
    return lambda: LIF(tau=2.0, **kw)


def constrained(model):
    """The weight-holding modules of a network that carry a mask or signs."""
    return [m for m in model.modules() if isinstance(m, (SynapticLinear, SynapticConv2d))]


def assert_constraints(model, wmin=None, wmax=None):
    mods = constrained(model)
    assert mods
    for m in mods:
        W = m.weight
        if m.mask is not None:
            assert torch.equal(W[~m.mask], torch.zeros_like(W[~m.mask])), "a masked weight moved"
        if m.sign is not None:
            assert ((W * m.sign) >= 0).all(), "a weight lost its presynaptic unit's sign"
        if wmin is not None:
            assert W.min() >= wmin and W.max() <= wmax


# --------------------------------------------------------------------------------------- the factory
def test_plain_builds_exactly_the_modules_and_keys_of_before():
    torch.manual_seed(0)
    a = MLP([6], 3, lif(), lif(), hidden=[4])
    torch.manual_seed(0)
    b = MLP([6], 3, lif(), lif(), hidden=[4], synapse=Synapse())
    assert (
        a.state_dict().keys()
        == b.state_dict().keys()
        == {"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"}
    )
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert type(b.layers[0]) is nn.Linear
    conv = ConvNet([1, 4, 4], 3, lif(), lif(), channels=[2], fc=4, synapse=Synapse())
    assert type(conv.layers[0]) is TimeDistributed and type(conv.layers[0].module) is nn.Conv2d
    assert Synapse().plain and not Synapse(tau_s=2.0).plain and not Synapse(wmax=1.0).plain


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(sparsity=1.0), r"sparsity must be in \[0, 1\) \(got sparsity=1.0\)"),
        (dict(sparsity=-0.1), r"sparsity must be in \[0, 1\)"),
        (dict(tau_s=0.0), r"tau_s must be null \(no filter\) or a number > 1 \(got tau_s=0.0\)"),
        (dict(wmin=0.5, wmax=0.5), r"wmin must be < wmax"),
        (dict(inhibitory_fraction=1.5), r"inhibitory_fraction must be in \[0, 1\]"),
        (dict(inhibitory_fraction=0.2, wmin=0.0), r"inhibitory_fraction=0.2 needs negative weights"),
        (dict(inhibitory_fraction=0.2, wmax=-0.1, wmin=-1.0), r"set wmax > 0"),
    ],
)
def test_bad_keys_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        Synapse(**kw)


# --------------------------------------------------------------------------------------- masks, bounds, signs
def test_masked_weights_get_no_gradient_and_stay_zero_under_adam():
    torch.manual_seed(0)
    for syn in (Synapse(sparsity=0.75).linear(20, 6), Synapse(sparsity=0.75).conv(2, 3, 3, padding=1).module):
        assert (~syn.mask).sum() == round(0.75 * syn.weight.numel())
        assert (syn.weight[~syn.mask] == 0).all()
        opt = torch.optim.Adam(syn.parameters(), lr=0.1, weight_decay=0.1)
        x = torch.rand(4, 20) if isinstance(syn, nn.Linear) else torch.rand(4, 2, 5, 5)
        for _ in range(3):
            opt.zero_grad()
            syn(x).pow(2).sum().backward()
            assert (syn.weight.grad[~syn.mask] == 0).all() and (syn.weight.grad[syn.mask] != 0).any()
            opt.step()
            assert (syn.weight[~syn.mask] == 0).all()


def test_bptt_keeps_bounds_signs_and_masks_after_every_step():
    # lr 1 on Adam: every step would leave the bounds and flip signs if the projection did not run
    torch.manual_seed(0)
    syn = Synapse(sparsity=0.5, wmin=-0.3, wmax=0.2, inhibitory_fraction=0.25)
    model = MLP([8], 3, lif(), lif(), hidden=[6], synapse=syn)
    first = model.layers[0]
    assert (first.sign < 0).sum() == 2 and first.sign.shape == (1, 8)  # one sign per presynaptic unit
    assert_constraints(model, -0.3, 0.2)
    rule = BPTT()
    rule.setup(model, lambda p: torch.optim.Adam(p, lr=1.0), total_steps=3)
    before = first.weight.clone()
    for b in range(3):
        model.reset()
        rule.train_batch(model, (torch.rand(5, 4, 8) < 0.5).float() * 4, torch.tensor([0, 1, 2, 0]))
        assert_constraints(model, -0.3, 0.2)
    assert not torch.equal(first.weight, before)
    inh = first.sign[0] < 0  # a column of one kind, one sign
    assert (first.weight[:, inh] <= 0).all() and (first.weight[:, ~inh] >= 0).all()


def test_dale_conv_signs_are_per_input_channel():
    m = Synapse(inhibitory_fraction=0.5).conv(4, 3, 3).module
    assert m.sign.shape == (1, 4, 1, 1) and (m.sign < 0).sum() == 2
    assert ((m.weight * m.sign) >= 0).all()


def test_init_rate_scaling_keeps_the_bounds():
    torch.manual_seed(0)
    model = MLP([10], 3, lif(), lif(), hidden=[8], synapse=Synapse(wmin=-0.05, wmax=0.05))
    calibrate_rates(model, (torch.rand(6, 4, 10) < 0.3).float(), target=0.3)
    assert_constraints(model, -0.05, 0.05)


# --------------------------------------------------------------------------------------- the exponential filter
def test_exp_filter_is_the_recursion_by_hand_multi_and_single_step():
    torch.manual_seed(0)
    syn = Synapse(tau_s=4.0)
    lin, (filt,) = syn.linear(3, 2), syn.filters("m")
    x = torch.rand(6, 2, 3)
    got = filt(lin(x))
    d = 1 - 1 / 4.0  # 1 - 1/tau_s
    I, want = torch.zeros(2, 2), []
    for t in range(6):
        I = d * I + lin(x[t])
        want.append(I)
    assert torch.allclose(got, torch.stack(want), atol=1e-6)
    single = syn.filters("s")[0]
    assert torch.allclose(torch.stack([single(lin(x[t])) for t in range(6)]), got, atol=1e-6)
    # in a network: between the synapse and the neuron, reset with the network, found by layer_pairs
    net = MLP([3], 2, lif(), lif(), hidden=[4], synapse=syn)
    assert isinstance(net.layers[1], ExpFilter)
    (s1, n1, between), _ = layer_pairs(net)
    assert s1 is net.layers[0] and between == [net.layers[1]]
    net(x)
    assert net.layers[1].i is not None
    net.reset()
    assert net.layers[1].i is None


# --------------------------------------------------------------------------------------- dropout
def test_dropout_mask_is_one_per_sample_for_every_step():
    torch.manual_seed(0)
    drop = SampleDropout(0.5)
    y = drop(torch.ones(7, 64, 10))
    assert torch.equal(y, y[:1].expand_as(y))  # the same mask at every t
    assert set(y.unique().tolist()) == {0.0, 2.0}  # inverted: kept x / (1 - p)
    assert not torch.equal(y[0, 0], y[0, 1])  # samples differ
    drop.eval()
    assert torch.equal(drop(torch.ones(7, 4, 10)), torch.ones(7, 4, 10))
    step = SampleDropout(0.5, step_mode="s")  # single-step: kept until reset
    a, b = step(torch.ones(64, 10)), step(torch.ones(64, 10))
    assert torch.equal(a, b)
    step.reset()
    assert not torch.equal(step(torch.ones(64, 10)), a)
    net = MLP([6], 3, lif(), lif(), hidden=[4], dropout=0.3)
    assert isinstance(net.layers[2], SampleDropout)


# --------------------------------------------------------------------------------------- Conv1dNet
def test_conv1d_net_shapes_and_its_convolution_is_conv1d():
    torch.manual_seed(0)
    net = Conv1dNet([20], 5, lif(), lif(), channels=[3, 4], kernel_size=5, fc=8)
    x = torch.rand(4, 2, 20)
    assert net(x).shape == (4, 2, 5)
    conv = net.layers[1].module
    assert conv.weight.shape == (3, 1, 1, 5)
    as2d = net.layers[0](x)  # [T, B, 1, 1, 20]
    want = F.conv1d(x.flatten(0, 1)[:, None], conv.weight[:, :, 0], conv.bias, padding=2)
    assert torch.allclose(net.layers[1](as2d)[:, :, :, 0].flatten(0, 1), want, atol=1e-6)
    assert net.layers[-4].in_features == 4 * 5  # 20 -> 10 -> 5 positions
    two = Conv1dNet([2, 12], 3, lif(), lif(), channels=[4], fc=6, synapse=Synapse(sparsity=0.5, tau_s=2.0))
    assert two(torch.rand(3, 2, 2, 12)).shape == (3, 2, 3)
    assert len(layer_pairs(two)) == 3
    for shape, match in (([1, 4, 4], "1-D inputs"), ([3], "too many conv1d stages")):
        with pytest.raises(ValueError, match=match):
            Conv1dNet(shape, 2, lif(), lif(), channels=[2, 2])
    with pytest.raises(ValueError, match="kernel_size must be an odd"):
        Conv1dNet([8], 2, lif(), lif(), kernel_size=4)


# --------------------------------------------------------------------------------------- local rules
OPT = lambda p: torch.optim.Adam(p, lr=0.05)
LOCAL = {
    "stdp": lambda: STDP(
        a_plus=0.5, a_minus=0.3, wmin=-1.0, wmax=1.0, normalize=1.0, init="uniform", readout="delta", readout_eta=0.5
    ),
    "semi_stdp": lambda: SemiSTDP(a_plus=0.5, wmin=-1.0, wmax=1.0, readout="gradient"),
    "rstdp": lambda: RSTDP(a_plus=0.5, a_minus=0.3, eta=2.0, readout="delta", readout_eta=0.5),
    "dpp": lambda: DPP(eta=0.5, feedback=1.0),
    "readout": lambda: Readout(readout="gradient"),
}


@pytest.mark.parametrize("net, rule_name", [("mlp", r) for r in LOCAL] + [("conv1d", "stdp"), ("conv1d", "dpp")])
def test_local_rules_never_move_a_masked_weight_nor_flip_a_sign(rule_name, net):
    torch.manual_seed(0)
    syn = Synapse(sparsity=0.5, inhibitory_fraction=0.25, tau_s=2.0 if net == "conv1d" else None)
    model = (
        MLP([8], 3, lif(), lif(), hidden=[6], synapse=syn)
        if net == "mlp"
        else Conv1dNet([8], 3, lif(), lif(), channels=[2], fc=4, kernel_size=3, synapse=syn)
    )
    for m in constrained(model):  # loud enough to spike
        m.weight.data.mul_(6.0)
    rule = LOCAL[rule_name]()
    rule.setup(model, OPT, total_steps=3)
    assert_constraints(model)
    before = [m.weight.clone() for m in constrained(model)]
    for b in range(3):
        model.reset()
        rule.train_batch(model, (torch.rand(5, 6, 8) < 0.6).float() * 3, torch.tensor([0, 1, 2, 0, 1, 2]))
        assert_constraints(model)
    moved = [not torch.equal(m.weight, w) for m, w in zip(constrained(model), before)]
    assert moved[-1] and (rule_name == "readout" or moved[0]), moved


def test_a_local_rule_refuses_bounds_that_would_silence_inhibitory_synapses():
    from dendsn_cli.errors import UserError

    model = MLP([8], 3, lif(), lif(), hidden=[6], synapse=Synapse(inhibitory_fraction=0.25))
    with pytest.raises(UserError, match=r"learning.wmin=0 keeps weights >= 0, and layer1 has 2 inhibitory inputs"):
        STDP(wmin=0.0, wmax=1.0).setup(model, OPT, total_steps=1)


def test_clamp_weights_reaches_wrapped_conv_synapses():
    net = ConvNet([1, 4, 4], 2, lif(), lif(), channels=[2], fc=4, synapse=Synapse(wmin=-0.1, wmax=0.1))
    with torch.no_grad():
        for m in constrained(net):
            m.weight.add_(1.0)
    clamp_weights(net)
    assert_constraints(net, -0.1, 0.1)


# --------------------------------------------------------------------------------------- the CLI
SMALL = [a for a in TINY if not a.startswith(("dataset.n_train", "T=", "epochs"))] + [
    "dataset.n_train=100",
    "T=8",
    "epochs=1",
    "dataset.n_channels=24",
]


def _checkpoint(path):
    return torch.load(path / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["model"]


def test_cli_stdp_on_masked_dale_synapses_keeps_masked_weights_zero(dendsn_here, tmp_path):
    p = dendsn_here(
        "train",
        *SMALL,
        "synapse=masked",
        "synapse.inhibitory_fraction=0.2",
        "learning=stdp",
        "learning.wmin=-1.0",
        "hydra.run.dir=run",
    )
    assert p.returncode == 0, p.stderr
    sd = _checkpoint(tmp_path / "run")
    masks = [k for k in sd if k.endswith(".mask")]
    assert masks == ["layers.0.mask", "layers.2.mask"]
    for k in masks:
        W, M, S = sd[k[:-4] + "weight"], sd[k], sd[k[:-4] + "sign"]
        assert (W[~M] == 0).all() and (W[M] != 0).any() and ((W * S) >= 0).all()
        assert 0.45 < (~M).float().mean() < 0.55


def test_cli_conv1d_with_bounded_filtered_dale_synapses(dendsn_here, tmp_path):
    p = dendsn_here(
        "train",
        *[a for a in SMALL if not a.startswith("network.hidden")],
        "network=conv1d",
        "network.channels=[3]",
        "network.fc=8",
        "neuron=lif",
        "synapse=bounded",
        "synapse.wmin=-0.2",
        "synapse.wmax=0.2",
        "synapse.tau_s=2.0",
        "synapse.inhibitory_fraction=0.2",
        "hydra.run.dir=run",
    )
    assert p.returncode == 0, p.stderr
    sd = _checkpoint(tmp_path / "run")
    assert sd["layers.1.module.weight"].shape == (3, 1, 1, 5)  # Conv1d(1 -> 3, k=5) as 1 x 5
    for k in [k for k in sd if k.endswith("weight")]:
        W = sd[k]
        assert W.min() >= -0.2 and W.max() <= 0.2
        assert ((W * sd[k[:-6] + "sign"]) >= 0).all()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["synapse=masked", "synapse.sparsity=1.0"], "synapse: sparsity must be in [0, 1) (got sparsity=1.0)"),
        (["synapse=dale", "learning=stdp"], "learning.wmin=0 keeps weights >= 0, and layer1 has 5 inhibitory inputs"),
    ],
)
def test_cli_bad_synapse_keys_are_one_line(dendsn_here, args, fragment):
    one_error(dendsn_here("train", *SMALL, *args, "hydra.run.dir=run"), fragment)


CUSTOM = """
import torch
from torch import nn


class Plain(nn.Module):
    def __init__(self, input_shape, n_classes, neuron, readout):
        super().__init__()
        self.fc, self.out = nn.Linear(input_shape[0], n_classes), readout()

    def forward(self, x):
        return self.out(self.fc(x))

    def reset(self):
        self.out.reset()
"""


def test_cli_a_custom_network_without_synapse_runs_plain_and_refuses_others(dendsn_here, tmp_path, monkeypatch):
    (tmp_path / "mynet.py").write_text(CUSTOM)
    monkeypatch.syspath_prepend(str(tmp_path))
    net = [
        "network._target_=mynet.Plain",
        "~network.hidden",
        "~network.bias",
        "~network.dropout",
        "~network.recurrent",
        "~network.inhibition",
        "~network.recurrent_init",
    ]
    p = dendsn_here("train", *[a for a in SMALL if not a.startswith("network.hidden")], *net, "hydra.run.dir=a")
    assert p.returncode == 0, p.stderr
    p = dendsn_here(
        "train", *[a for a in SMALL if not a.startswith("network.hidden")], *net, "synapse=masked", "hydra.run.dir=b"
    )
    one_error(p, "synapse=masked", "mynet.Plain")
