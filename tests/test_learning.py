"""Local learning rules: the real math on tiny spike trains, checked against values worked out by hand.

Every rule is checked (a) on spike trains written into a layer's recordings, dW compared with the
numbers computed below in the comments, (b) through the forward hooks of real networks, multi-step
(vectorised over T) against single-step (the equations step by step), linear and conv, point and
dendritic, (c) for bounds.
"""

import math

import pytest
import torch
from torch import nn

from dendsn.compartments import Passive
from dendsn.competition import KWinnerTakeAll, LateralInhibition
from dendsn.dendritic import DendLIF
from dendsn.networks import MLP, SpikingNet
from dendsn.neurons import IF, LIF
from dendsn.synapses import DendConv2d
from dendsn.wiring import Segregated
from dendsn_cli.errors import UserError
from dendsn_cli.learning import DPP, RSTDP, STDP, Readout, SemiSTDP
from dendsn_cli.learning.dpp import predicted_soma, predicted_soma_step
from dendsn_cli.learning.local import find_layers
from dendsn_cli.learning.plasticity import Connection, correlate, expand, trace, trace_step

NO_OPT = lambda params: torch.optim.SGD(params, lr=0.0)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def point_net(n_in=2, n_hidden=1, n_out=2, neuron=None):
    return SpikingNet([nn.Linear(n_in, n_hidden), neuron or IF(), nn.Linear(n_hidden, n_out), IF()])


def setup_rule(rule, net):
    rule.setup(net, NO_OPT, total_steps=1)
    return rule


def record(layer, **seqs):
    """Write [T, B, ...] recordings into a layer (what the hooks record in a multi-step pass)."""
    layer.rec = {k: [v] for k, v in seqs.items()}


# --------------------------------------------------------------------------------------- traces
def test_trace_is_the_recurrence_for_all_steps_at_once():
    s = t([1.0], [0.0], [1.0], [0.0])  # [T=4, 1]
    # x = 1, 0.5, 0.25 + 1, 0.625 (tau = 2: decay 1/2)
    assert torch.allclose(trace(s, 2.0)[:, 0], t(1.0, 0.5, 1.25, 0.625))
    x = None
    for step in s:
        x = trace_step(x, step, 4.0)  # decay 3/4: 1, .75, 1.5625, 1.171875
    assert torch.allclose(x, t(1.171875))


# --------------------------------------------------------------------------------------- STDP
# One sample, T = 3, two inputs, one neuron, tau_pre = tau_post = 2:
#   s_pre  = [[1, 0], [0, 0], [0, 1]]   x_pre  = [[1, 0], [.5, 0], [.25, 1]]
#   s_post = [1 at t=1]                  x_post = [0, 1, .5]
#   LTP = sum_t x_pre[t] s_post[t] = x_pre[1] = [.5, 0]
#   LTD = sum_t x_post[t] s_pre[t] = [x_post[0], x_post[2]] = [0, .5]
PRE = t([[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 1.0]])  # [T, B=1, 2]
POST = t([[0.0]], [[1.0]], [[0.0]])  # [T, B=1, 1]


@pytest.mark.parametrize("steps", [False, True])
def test_stdp_additive_by_hand(steps):
    rule = setup_rule(STDP(a_plus=1.0, a_minus=0.5), point_net())
    layer = rule.layers[0]
    record(layer, pre=PRE, post=POST, inp=POST)
    dW, db = (rule.delta_steps if steps else rule.delta_seq)(layer, None, None)
    assert db is None
    assert torch.allclose(dW, t([0.5, -0.25]))  # 1 * [.5, 0] - .5 * [0, .5]


def test_stdp_multiplicative_soft_bounds_by_hand():
    rule = setup_rule(
        STDP(a_plus=1.0, a_minus=0.5, weight_dependence="multiplicative", wmin=0.0, wmax=1.0), point_net()
    )
    layer = rule.layers[0]
    layer.weight.data = t([0.2, 0.6])
    record(layer, pre=PRE, post=POST, inp=POST)
    dW, _ = rule.delta_seq(layer, None, None)
    # f_plus = 1 - W = [.8, .4], f_minus = W - 0 = [.2, .6]: [.5 * .8, -.5 * .6 * .5]
    assert torch.allclose(dW, t([0.4, -0.15]))


def test_semi_stdp_is_the_ltp_term_only():
    rule = setup_rule(SemiSTDP(a_plus=2.0), point_net())
    layer = rule.layers[0]
    record(layer, pre=PRE, post=POST, inp=POST)
    assert torch.allclose(rule.delta_seq(layer, None, None)[0], t([1.0, 0.0]))
    assert torch.allclose(rule.delta_steps(layer, None, None)[0], t([1.0, 0.0]))


def test_stdp_dendritic_linear_layer_shares_the_soma_spike_across_compartments():
    # 2 neurons x K_in = 2 compartments: features s * K_in + k; neuron 0 spikes at t=1, neuron 1 never
    net = SpikingNet([nn.Linear(2, 4), DendLIF(Segregated(2)), nn.Linear(2, 2), IF()])
    rule = setup_rule(STDP(a_plus=1.0, a_minus=0.5), net)
    layer = rule.layers[0]
    post = torch.cat([POST, torch.zeros_like(POST)], -1)  # [T, 1, S=2]
    record(layer, pre=PRE, post=post, inp=torch.zeros(3, 1, 4))
    dW, _ = rule.delta_seq(layer, None, None)
    expected = t([0.5, -0.25], [0.5, -0.25], [0.0, 0.0], [0.0, 0.0])  # rows 0, 1 <- neuron 0
    assert torch.allclose(dW, expected)
    assert torch.allclose(rule.delta_steps(layer, None, None)[0], expected)


# Conv, one input channel 3x3, kernel 2x2, no padding -> 2x2 output positions; T = 2, tau = 2.
#   s_pre[t=0] = P, s_pre[t=1] = 0;  one postsynaptic spike at t=1 at position (0, 0), one at (1, 1)
#   LTP[di, dj] = sum_pos post * x_pre[t=1] = .5 (P[0:2, 0:2] + P[1:3, 1:3])
#   LTD = sum x_post * s_pre: s_pre is 0 at t=1 and x_post is 0 at t=0  -> 0
P = t([1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [4.0, 0.0, 1.0])
CONV_PRE = torch.stack([P, torch.zeros(3, 3)])[:, None, None]  # [T=2, B=1, C=1, 3, 3]
CONV_POST = torch.zeros(2, 1, 1, 2, 2)
CONV_POST[1, 0, 0, 0, 0] = CONV_POST[1, 0, 0, 1, 1] = 1.0
CONV_EXPECTED = 0.5 * (P[0:2, 0:2] + P[1:3, 1:3])  # [[1, 1.5], [0, 1.5]]


def conv_net(k_in=1, step_mode="m", neuron=None):
    cell = neuron or (LIF(step_mode=step_mode) if k_in == 1 else DendLIF(Segregated(k_in), step_mode=step_mode))
    return SpikingNet(
        [
            DendConv2d(1, 1, k_in, kernel_size=2, step_mode=step_mode),
            cell,
            nn.Flatten(-3),
            nn.Linear(4, 2),
            LIF(step_mode=step_mode),
        ]
    )


@pytest.mark.parametrize("k_in", [1, 2])
def test_stdp_conv_by_hand(k_in):
    rule = setup_rule(STDP(a_plus=1.0, a_minus=1.0), conv_net(k_in))
    layer = rule.layers[0]
    record(layer, pre=CONV_PRE, post=CONV_POST, inp=torch.zeros(2, 1, k_in, 2, 2))
    for dW in (rule.delta_seq(layer, None, None)[0], rule.delta_steps(layer, None, None)[0]):
        assert dW.shape == (k_in, 1, 2, 2)  # channel k * C + c: every compartment the same
        for k in range(k_in):
            assert torch.allclose(dW[k, 0], CONV_EXPECTED)


def test_conv_correlation_is_the_gradient_of_the_convolution():
    # sum_pos post * unfold(pre) is exactly d/dW of sum(post * conv(pre, W)): check against autograd
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
    pre, post = torch.rand(5, 3, 7, 7), torch.rand(5, 4, 4, 4)
    (conv(pre) * post).sum().backward()
    assert torch.allclose(correlate(Connection.of(conv, 1), post, pre), conv.weight.grad, atol=1e-5)


def test_expand_follows_the_feature_layouts():
    g = t([1.0, 10.0], [2.0, 20.0])  # 2 neurons
    assert expand(Connection("linear", 3), g).tolist() == [[1, 10]] * 3 + [[2, 20]] * 3
    assert expand(Connection("conv", 2), g).tolist() == [[1, 10], [2, 20], [1, 10], [2, 20]]


# --------------------------------------------------------------------------------------- R-STDP
def test_rstdp_by_hand():
    # eligibility with tau_e = 2: e[T-1] = .5 * (a+ LTP at t=1) - 1 * (a- LTD at t=2) = [.25, -.25]
    rule = setup_rule(RSTDP(eta=2.0, tau_e=2.0, a_plus=1.0, a_minus=0.5), point_net())
    layer = rule.layers[0]
    pre, post = PRE.expand(3, 2, 2), POST.expand(3, 2, 1)  # two identical samples
    record(layer, pre=pre, post=post, inp=post)
    out = torch.zeros(3, 2, 2)
    out[:, :, 1] = 1.0  # the read-out says class 1 for both
    y = torch.tensor([1, 0])  # right for sample 0, wrong for sample 1
    rule._r = rule.reward(out, y)
    assert rule._r.tolist() == [1.0, -1.0]
    for fn in (rule.delta_seq, rule.delta_steps):
        assert torch.allclose(fn(layer, out, y)[0], torch.zeros(2), atol=1e-7)  # +1 and -1 cancel
    rule._r = torch.tensor([1.0, 1.0])
    for fn in (rule.delta_seq, rule.delta_steps):
        assert torch.allclose(fn(layer, out, y)[0], 2.0 * 2 * t(0.25, -0.25))  # eta * 2 samples


# --------------------------------------------------------------------------------------- DPP
def test_predicted_soma_by_hand():
    I = t([[0.5, 2.0]])  # [T=1, B=1, 2] currents
    assert torch.allclose(predicted_soma(LIF(tau=2.0), I), I)  # v_reset + I
    assert torch.allclose(predicted_soma(LIF(tau=2.0, decay_input=False), I), 2 * I)  # v_reset + tau I
    assert torch.allclose(predicted_soma(LIF(tau=2.0, v_reset=-1.0), I), I - 1)
    # DendLIF, two passive compartments (tau_d = 2, decay_input): x = [1, 0] -> v = [.5, 0] after one
    # step, then [.75, 0]; phi = 1/2 each: u = (sum phi v + v_reset) / (sum phi + 1) = (.5 * .5) / 2
    n = DendLIF(Segregated(2), tau=2.0, compartment=Passive(2.0, decay_input=True))
    x = t([[1.0, 0.0]], [[1.0, 0.0]])  # [T=2, B=1, K_in=2] (one neuron)
    assert torch.allclose(predicted_soma(n, x)[:, 0, 0], t(0.125, 0.1875))
    # no decay_input, tau = 4: u = (sum phi v + v_reset / 4) / (sum phi + 1/4)
    n = DendLIF(Segregated(2), tau=4.0, decay_input=False, v_reset=0.4, compartment=Passive(2.0, decay_input=True))
    assert torch.allclose(predicted_soma(n, x)[0, 0, 0], torch.tensor((0.25 + 0.1) / 1.25))
    state = {}
    steps = [predicted_soma_step(n, x[i], state) for i in range(2)]
    assert torch.allclose(torch.stack(steps), predicted_soma(n, x))


@pytest.mark.parametrize("steps", [False, True])
def test_dpp_by_hand(steps):
    # phi(u) = sigmoid(u) (beta 1, v_threshold 1 + offset -1 = 0); pre [[1,0],[0,1]] -> psp [[1,0],[.5,1]] (tau 2)
    # S = [0, 1], u_pred = [0, 1]: err = [0 - .5, 1 - sigmoid(1)]
    # dW = eta * (err[0] psp[0] + err[1] psp[1]),  db = eta * (err[0] + err[1])
    rule = setup_rule(
        DPP(eta=2.0, phi_beta=1.0, phi_offset=-1.0, readout="gradient", learn_bias=True, error="spikes"), point_net()
    )
    layer = rule.layers[0]
    record(layer, pre=t([[1.0, 0.0]], [[0.0, 1.0]]), post=t([[0.0]], [[1.0]]), u_pred=t([[0.0]], [[1.0]]))
    e0, e1 = -0.5, 1 - 1 / (1 + math.exp(-1))
    dW, db = (rule.delta_steps if steps else rule.delta_seq)(layer, None, None)
    assert torch.allclose(dW, 2.0 * t([e0 + 0.5 * e1, e1]))
    assert torch.allclose(db, 2.0 * t(e0 + e1))


@pytest.mark.parametrize("steps", [False, True])
def test_dpp_rate_error_by_hand(steps):
    # error=rate: err = phi(u_soma) - phi(u_pred); phi = sigmoid as above, u_soma = [2, 1], u_pred = [0, 1]
    # err = [sigmoid(2) - .5, 0];  dW = eta * (err[0] psp[0] + err[1] psp[1]) with psp [[1, 0], [.5, 1]]
    rule = setup_rule(DPP(eta=2.0, phi_beta=1.0, phi_offset=-1.0, readout="gradient", error="rate"), point_net())
    layer = rule.layers[0]
    record(
        layer,
        pre=t([[1.0, 0.0]], [[0.0, 1.0]]),
        post=t([[0.0]], [[1.0]]),
        u_pred=t([[0.0]], [[1.0]]),
        u_soma=t([[2.0]], [[1.0]]),
    )
    e0 = 1 / (1 + math.exp(-2)) - 0.5
    dW, _ = (rule.delta_steps if steps else rule.delta_seq)(layer, None, None)
    assert torch.allclose(dW, 2.0 * t([e0, 0.0]))


def test_dpp_rate_error_predicts_the_nudged_soma():
    """u_soma of the read-out is the steady state under drive + teacher: (1 - nudge) u_pred + nudge u_target."""
    torch.manual_seed(0)
    net = point_net(n_in=4, n_hidden=3, n_out=2, neuron=LIF())
    net.layers[2] = nn.Linear(3, 2)
    net.layers[3] = LIF(tau=2.0)
    rule = setup_rule(DPP(eta=0.0, nudge=0.5, u_plus=3.0, u_minus=-1.0, error="rate"), net)
    x, y = torch.rand(5, 2, 4), torch.tensor([0, 1])
    rule._y = y
    rule.record_pass(net, x)
    ro = rule.readout_layer
    target = torch.tensor([[3.0, -1.0], [-1.0, 3.0]])
    assert torch.allclose(ro.seq("u_soma"), 0.5 * ro.seq("u_pred") + 0.5 * target, atol=1e-5)
    hidden = rule.layers[0]
    assert torch.equal(hidden.seq("u_soma"), hidden.seq("u_pred"))  # no feedback: nothing to predict


def test_dpp_teacher_nudges_the_readout_toward_the_label_during_training_only():
    torch.manual_seed(0)
    net = point_net(n_in=4, n_hidden=3, n_out=2, neuron=LIF())
    rule = setup_rule(DPP(eta=0.0, nudge=0.5, u_plus=3.0, u_minus=-1.0), net)
    x, y = torch.rand(5, 2, 4), torch.tensor([0, 1])
    rule._y = y
    out = rule.record_pass(net, x)
    u_pred = rule.readout_layer.seq("u_pred")  # [T, B, 2]
    I_clean = rule.readout_layer.seq("cur")
    assert torch.allclose(u_pred, I_clean)  # IF read-out: u_pred = the drive I
    # nudged soma drive: I + .5 (u_target - u_pred) with u_target 3 for the label, -1 otherwise
    target = torch.tensor([[3.0, -1.0], [-1.0, 3.0]])
    nudged = I_clean + 0.5 * (target - u_pred)
    net.reset()
    assert torch.equal(out, IF()(nudged))
    net.reset()
    free = net(x)
    net.reset()
    assert torch.equal(rule.eval_batch(net, x, y)[1], free)  # no teacher at test


# --------------------------------------------------------------------------------------- the hooks, m vs s
def _mlp(step_mode, dendritic, seed=0):
    torch.manual_seed(seed)
    cell = (
        (lambda: DendLIF(Segregated(2), tau=2.0, step_mode=step_mode))
        if dendritic
        else (lambda: LIF(step_mode=step_mode))
    )
    net = SpikingNet([nn.Linear(6, 4 * (2 if dendritic else 1)), cell(), nn.Linear(4, 3), LIF(step_mode=step_mode)])
    net.layers[0].weight.data.abs_()  # excitatory, so that every layer spikes
    return net


def _conv(step_mode, dendritic, seed=0):
    torch.manual_seed(seed)
    net = conv_net(2 if dendritic else 1, step_mode)
    net.layers[0].weight.data.abs_()
    return net


RULES = {
    "stdp": lambda: STDP(a_plus=0.01, a_minus=0.005, readout="none"),
    "stdp_mult_wta": lambda: STDP(
        a_plus=0.01, a_minus=0.005, weight_dependence="multiplicative", wmin=-1.0, wmax=1.0, wta=1, readout="none"
    ),
    "semi_stdp": lambda: SemiSTDP(a_plus=0.01, readout="none"),
    "rstdp": lambda: RSTDP(a_plus=0.01, a_minus=0.005, tau_e=3.0, readout="none"),
    "dpp": lambda: DPP(eta=0.01, feedback=1.0, error="spikes"),
    "dpp_rate": lambda: DPP(eta=0.01, feedback=1.0, error="rate"),
}


@pytest.mark.parametrize("rule_name", list(RULES))
@pytest.mark.parametrize("net", ["mlp", "dend_mlp", "conv", "dend_conv"])
def test_multi_step_and_single_step_give_the_same_update(rule_name, net):
    build = _mlp if "mlp" in net else _conv
    dendritic = net.startswith("dend")
    torch.manual_seed(1)
    shape = (6, 3, 6) if "mlp" in net else (6, 3, 1, 3, 3)
    x = (torch.rand(shape) < 0.6).float() * 6.0
    y = torch.tensor([0, 1, 2]) if "mlp" in net else torch.tensor([0, 1, 0])
    weights = []
    for mode in ("m", "s"):
        model = build(mode, dendritic)
        rule = RULES[rule_name]()
        rule.setup(model, NO_OPT, total_steps=1)
        before = [p.detach().clone() for p in model.parameters()]
        rule.train_batch(model, x, y)
        after = [p.detach().clone() for p in model.parameters()]
        changed = [not torch.equal(a, b) for a, b in zip(before, after)]
        assert changed[0], "the first layer's weights did not change"
        weights.append(after)
    for a, b in zip(*weights):
        assert torch.allclose(a, b, atol=1e-6)


def test_hooks_record_pre_and_post_spikes_of_every_learning_layer():
    net = _mlp("m", dendritic=True)
    rule = setup_rule(STDP(readout="delta"), net)
    x = torch.rand(4, 2, 6)
    rule.record_pass(net, x)
    l1, ro = rule.layers
    assert torch.equal(l1.seq("pre"), x)
    assert l1.seq("cur").shape == (4, 2, 8) and l1.seq("post").shape == (4, 2, 4)
    assert torch.equal(ro.seq("pre"), l1.seq("post"))  # the read-out's input is layer 1's spikes
    assert [l.name for l in rule.layers] == ["layer1", "readout"]


# --------------------------------------------------------------------------------------- bounds, init, competition
@pytest.mark.parametrize("kind", ["additive", "multiplicative"])
def test_weights_stay_in_bounds(kind):
    torch.manual_seed(0)
    net = _mlp("m", dendritic=False)
    rule = setup_rule(STDP(a_plus=5.0, a_minus=3.0, wmin=-0.2, wmax=0.3, weight_dependence=kind, init="uniform"), net)
    W = rule.layers[0].weight
    assert W.min() >= -0.2 and W.max() <= 0.3
    for _ in range(3):
        rule.train_batch(net, (torch.rand(5, 8, 6) < 0.7).float() * 3, torch.randint(0, 3, (8,)))
        assert W.min() >= -0.2 and W.max() <= 0.3


BOUNDED = {
    "semi_stdp": lambda: SemiSTDP(a_plus=5.0, wmin=-0.2, wmax=0.3, init="uniform", readout="none"),
    "rstdp": lambda: RSTDP(a_plus=5.0, a_minus=3.0, eta=2.0, wmin=-0.2, wmax=0.3, init="uniform", readout="none"),
    "dpp": lambda: DPP(eta=5.0, feedback=1.0, wmin=-0.2, wmax=0.3, init="uniform"),
}


@pytest.mark.parametrize("rule_name", list(BOUNDED))
@pytest.mark.parametrize("net", ["mlp", "dend_mlp", "conv", "dend_conv"])
def test_every_rule_keeps_its_weights_in_bounds(rule_name, net):
    # rates far too large for the bounds: every update would leave [wmin, wmax] if it were not clipped
    # (the bounds are the hidden layers'; a dpp read-out learns unbounded)
    model = (_mlp if "mlp" in net else _conv)("m", net.startswith("dend"))
    rule = setup_rule(BOUNDED[rule_name](), model)
    shape = (5, 8, 6) if "mlp" in net else (5, 8, 1, 3, 3)
    moved = False
    for b in range(3):
        torch.manual_seed(b)
        hidden = [l for l in rule.local_layers() if not l.is_readout]
        before = [l.weight.clone() for l in hidden]
        rule.train_batch(model, (torch.rand(shape) < 0.7).float() * 6, torch.randint(0, 2, (8,)))
        for l, w0 in zip(hidden, before):
            assert l.weight.min() >= -0.2 and l.weight.max() <= 0.3, (l.name, l.weight.min(), l.weight.max())
            moved |= not torch.equal(l.weight, w0)
    assert moved, "no weight changed: the bounds were not tested"


def test_normalize_and_uniform_init():
    net = _mlp("m", dendritic=False)
    rule = setup_rule(STDP(wmin=0.0, wmax=1.0, init="uniform", normalize=0.5), net)
    W = rule.layers[0].weight
    assert W.min() >= 0 and torch.allclose(W.norm(dim=1), torch.full((4,), 0.5))
    assert torch.equal(rule.layers[0].bias, torch.zeros(4))


def test_wta_only_the_most_driven_neuron_learns():
    rule = setup_rule(STDP(a_plus=1.0, a_minus=0.0, wta=1, readout="none"), point_net(n_hidden=3))
    layer = rule.layers[0]
    post = torch.ones(3, 1, 3)  # every neuron spikes every step
    inp = t([[0.1, 0.9, 0.3]]).expand(3, 1, 3)  # neuron 1 is the most driven
    record(layer, pre=PRE, post=post, inp=inp)
    dW, _ = rule.delta_seq(layer, None, None)
    assert dW[0].abs().sum() == 0 and dW[2].abs().sum() == 0 and dW[1].abs().sum() > 0


@pytest.mark.parametrize("target_rate", [0.25, None])
def test_homeostasis_lowers_the_bias_of_busy_neurons(target_rate):
    net = point_net(n_hidden=2, neuron=LIF())
    rule = setup_rule(STDP(a_plus=0.0, a_minus=0.0, homeostasis=1.0, target_rate=target_rate, readout="none"), net)
    layer = rule.layers[0]
    layer.bias.data = t(0.5, -0.5)
    post = t([[1.0, 0.0]], [[1.0, 0.0]], [[0.0, 0.0]])  # rates 2/3 and 0
    cur = t([[0.0, 2.0]]).expand(3, 1, 2) + layer.bias  # W x = [0, 2] in every row: sigma = std = sqrt(2)
    record(layer, pre=PRE, post=post, cur=cur, inp=cur)
    rule.learn(torch.zeros(3, 1, 2), torch.tensor([0]))
    target = 0.25 if target_rate is not None else 1 / 3  # null: the layer's mean rate
    expected = t(0.5, -0.5) - math.sqrt(2) * (t(2 / 3, 0.0) - target)
    assert torch.allclose(layer.bias, expected)


def test_competition_modules_by_hand():
    x = t([[1.0, 2.0, 3.0, 6.0]])  # [B, S*K_in] with S = 2, K_in = 2: totals 3, 9
    assert torch.allclose(
        LateralInhibition(1.0, k_in=2)(x), t([[1.0 - 2.0, 2.0 - 4.0, 3.0 - 2.0, 6.0 - 4.0]])
    )  # per compartment
    assert torch.equal(KWinnerTakeAll(1, k_in=2)(x), t([[0.0, 0.0, 3.0, 6.0]]))
    c = torch.zeros(1, 1, 4, 1, 1)  # conv [T, B, K_in*C, H, W], K_in = 2, C = 2
    c[0, 0, :, 0, 0] = torch.tensor([1.0, 5.0, 2.0, 1.0])  # channel 0: 1 + 2 = 3, channel 1: 5 + 1 = 6
    assert KWinnerTakeAll(1, k_in=2)(c)[0, 0, :, 0, 0].tolist() == [0.0, 5.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="k must be"):
        KWinnerTakeAll(0)


def test_divisive_inhibition_adaptive_thresholds_and_k_by_hand():
    x = t([[1.0, 2.0, 3.0, 6.0]])  # one sample, S = 4: mean 3, std sqrt(14/3)
    li = LateralInhibition(divisive=True, gain=1.0, k=2, adapt=0.1, n_neurons=4)
    z = (x - 3.0) / math.sqrt(14 / 3)
    li.eval()
    assert torch.allclose(li(x), z * t([[0.0, 0.0, 1.0, 1.0]]), atol=1e-5)  # the top 2 keep their input
    assert torch.equal(li.theta, torch.zeros(4))  # thresholds adapt in training only
    li.train()
    li(x)  # winners 2, 3: theta += 0.1 * (w - k/S)
    assert torch.allclose(li.theta, t(-0.05, -0.05, 0.05, 0.05))
    li.eval()
    assert torch.allclose(li(x), (z - li.theta) * t([[0.0, 0.0, 1.0, 1.0]]), atol=1e-5)
    T_x = x.expand(3, 1, 4)  # multi-step [T, B, S]: T steps at once
    li2 = LateralInhibition(divisive=True, k=2, adapt=0.1, n_neurons=4)
    li2(T_x)
    assert torch.allclose(li2.theta, 3 * t(-0.05, -0.05, 0.05, 0.05))
    with pytest.raises(ValueError, match="n_neurons"):
        LateralInhibition(adapt=0.1)


def test_network_competition_sits_between_synapse_and_neuron_and_defaults_to_none():
    plain = MLP([6], 3, LIF, LIF, hidden=[4])
    assert [type(m).__name__ for m in plain.layers] == ["Linear", "LIF", "Linear", "LIF"]
    from functools import partial

    net = MLP([6], 3, LIF, LIF, hidden=[4], competition=partial(KWinnerTakeAll, 2))
    assert [type(m).__name__ for m in net.layers] == ["Linear", "KWinnerTakeAll", "LIF", "Linear", "LIF"]
    assert [l.name for l in find_layers(net)] == ["layer1", "readout"]


# --------------------------------------------------------------------------------------- read-out, errors
def test_readout_baseline_changes_only_the_readout():
    torch.manual_seed(0)
    net = _mlp("m", dendritic=False)
    rule = Readout(init="keep")
    rule.setup(net, lambda p: torch.optim.SGD(p, lr=1.0), total_steps=1)
    before = [p.detach().clone() for p in net.parameters()]
    rule.train_batch(net, torch.rand(4, 8, 6) * 3, torch.randint(0, 3, (8,)))
    changed = [not torch.equal(a, p) for a, p in zip(before, net.parameters())]
    assert changed == [False, False, True, True]


def test_delta_readout_by_hand():
    net = point_net(n_in=2, n_hidden=2, n_out=2)
    rule = setup_rule(Readout(readout="delta", readout_eta=0.5), net)
    ro = rule.readout_layer
    ro.weight.data.zero_()
    ro.bias.data.zero_()
    record(ro, pre=t([[1.0, 0.0]], [[1.0, 1.0]]), post=torch.zeros(2, 1, 2))
    out = t([[1.0, 0.0]], [[0.0, 0.0]])  # rates [.5, 0]; label 1: e = [-.5, 1]
    rule.delta_readout(out, torch.tensor([1]))  # r_pre = [1, .5]
    assert torch.allclose(ro.weight, 0.5 * t([-0.5, -0.25], [1.0, 0.5]))
    assert torch.allclose(ro.bias, 0.5 * t(-0.5, 1.0))


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"tau_pre": 0.5}, "tau_pre"),
        ({"a_plus": -1.0}, "a_plus"),
        ({"weight_dependence": "hebb"}, "weight_dependence"),
        ({"weight_dependence": "multiplicative"}, "wmin and wmax"),
        ({"wmin": 1.0, "wmax": 0.0}, "wmin"),
        ({"readout": "dpp"}, "readout"),
        ({"wta": -1}, "wta"),
        ({"layers": [0]}, "layers"),
        ({"init": "uniform"}, "wmin and wmax"),
        ({"target_rate": 2.0}, "target_rate"),
    ],
)
def test_out_of_range_parameters_name_the_key(kw, key):
    with pytest.raises(ValueError, match=key):
        STDP(**kw)


def test_dpp_and_rstdp_check_their_parameters():
    with pytest.raises(ValueError, match="nudge"):
        DPP(nudge=1.5)
    with pytest.raises(ValueError, match="error must be one of"):
        DPP(error="voltage")
    with pytest.raises(ValueError, match="tau_e"):
        RSTDP(tau_e=0.0)
    with pytest.raises(ValueError, match="tau_post does not apply"):
        SemiSTDP(tau_post=3.0)


def test_layers_beyond_the_network_is_a_user_error():
    with pytest.raises(UserError, match="learning.layers"):
        setup_rule(STDP(layers=[2]), point_net())
