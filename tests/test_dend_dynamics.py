"""Compartments, dendrite coupling, synapses and synaptic filters against hand-computed values."""

import math

import pytest
import torch
from torch.func import functional_call

from dendsn.compartments import Active, Passive
from dendsn.dendrite import Dendrite
from dendsn.synapses import DendConv2d, DendLinear, ExpFilter, IdentityFilter, MaskedLinear
from dendsn.wiring import Chain, KTo1, Segregated, Tree


def seq(*rows):
    """[T, B=1, S=1, K] float64 from per-step lists."""
    return torch.tensor(rows, dtype=torch.float64)[:, None, None, :]


def run(dend, x, method):
    dend.method = method
    return dend.multi_step(x)


# --- compartments ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["auto", "loop"])
def test_passive_decay_input(method):
    # v[t] = v[t-1] + (I[t] - (v[t-1] - v_rest)) / tau_d,  tau_d = 2, I = 1, 2, 0
    d = Dendrite(Segregated(1), Passive(tau_d=2.0)).double()
    _, v = run(d, seq([1.0], [2.0], [0.0]), method)
    #  0 + (1 - 0)/2 = 0.5;  0.5 + (2 - 0.5)/2 = 1.25;  1.25 + (0 - 1.25)/2 = 0.625
    assert torch.allclose(v.flatten(), torch.tensor([0.5, 1.25, 0.625], dtype=torch.float64))
    d = Dendrite(Segregated(1), Passive(tau_d=2.0, v_rest=-1.0)).double()
    _, v = run(d, seq([1.0], [2.0], [0.0]), method)
    # -1 + (1 - 0)/2 = -0.5;  -0.5 + (2 - 0.5)/2 = 0.25;  0.25 + (0 - 1.25)/2 = -0.375
    assert torch.allclose(v.flatten(), torch.tensor([-0.5, 0.25, -0.375], dtype=torch.float64))


@pytest.mark.parametrize("method", ["auto", "loop"])
def test_passive_no_decay_input(method):
    # v[t] = v[t-1] - (v[t-1] - v_rest)/tau_d + I[t]
    d = Dendrite(Segregated(1), Passive(tau_d=2.0, decay_input=False)).double()
    _, v = run(d, seq([1.0], [2.0], [0.0]), method)
    # 0 - 0 + 1 = 1;  1 - 0.5 + 2 = 2.5;  2.5 - 1.25 + 0 = 1.25
    assert torch.allclose(v.flatten(), torch.tensor([1.0, 2.5, 1.25], dtype=torch.float64))


def test_passive_continues_from_state():
    d = Dendrite(Segregated(1), Passive(tau_d=2.0)).double()
    x = seq([1.0], [2.0], [0.0], [3.0])
    vp_all, _ = d.multi_step(x)
    vp_a, _ = d.multi_step(x[:2])
    vp_b, _ = d.multi_step(x[2:], vp_a[-1])
    assert torch.allclose(torch.cat([vp_a, vp_b]), vp_all)


@pytest.mark.parametrize("method", ["auto", "loop"])
def test_active_compartments(method):
    vp = [0.5, 1.25, 0.625]  # passive potentials of the test above
    x = seq([1.0], [2.0], [0.0])
    sig = lambda z: 1 / (1 + math.exp(-z))
    d = Dendrite(Segregated(1), Active(activation="sigmoid", strength=2.0, beta=1.0, theta_d=0.5)).double()
    _, v = run(d, x, method)
    expect = [p + 2.0 * sig(1.0 * (p - 0.5)) for p in vp]  # v = v_p + amp * sigmoid(beta (v_p - theta_d))
    assert torch.allclose(v.flatten(), torch.tensor(expect, dtype=torch.float64))
    d = Dendrite(Segregated(1), Active(activation="threshold_linear", strength=3.0, theta_d=1.0)).double()
    vp_seq, v = run(d, x, method)
    assert torch.allclose(vp_seq.flatten(), torch.tensor(vp, dtype=torch.float64))
    assert torch.allclose(v.flatten(), torch.tensor([0.5, 1.25 + 3 * 0.25, 0.625], dtype=torch.float64))
    d = Dendrite(Segregated(1), Active(activation="none")).double()
    assert torch.allclose(run(d, x, method)[1].flatten(), torch.tensor(vp, dtype=torch.float64))


def test_active_per_branch_strength_is_learnable():
    comp = Active(activation="threshold_linear", theta_d=0.0, strength=[1.0, 2.0], learn_strength=True)
    d = Dendrite(Segregated(2), comp).double()
    x = seq([2.0, 2.0])  # v_p = 1 in both compartments
    _, v = d.multi_step(x)
    assert torch.allclose(v.flatten(), torch.tensor([1 + 1.0, 1 + 2.0], dtype=torch.float64))
    v.sum().backward()
    assert torch.allclose(comp.strength.grad, torch.tensor([1.0, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="strength has 2 values but the wiring has 3"):
        Dendrite(Segregated(3), Active(strength=[1.0, 2.0]))


# --- coupling ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["auto", "loop"])
def test_chain_coupling(method):
    # Chain(2): 0 -> 1, input to 0, output 1, g = 0.5, tau_d = 2 (decay_input); I_1 = g (v_0 - v_1)
    d = Dendrite(Chain(2), Passive(tau_d=2.0), coupling_g=0.5).double()
    _, v = run(d, seq([2.0], [0.0], [0.0]), method)
    # t0: v = [0 + 2/2, 0] = [1, 0]
    # t1: I_1 = 0.5 (1 - 0) = 0.5;   v_0 = 1 + (0 - 1)/2 = 0.5;   v_1 = 0 + (0.5 - 0)/2 = 0.25
    # t2: I_1 = 0.5 (0.5 - 0.25) = 0.125;  v_0 = 0.25;   v_1 = 0.25 + (0.125 - 0.25)/2 = 0.1875
    expect = torch.tensor([[1.0, 0.0], [0.5, 0.25], [0.25, 0.1875]], dtype=torch.float64)
    assert torch.allclose(v[:, 0, 0], expect)
    assert torch.allclose(d.output(v).flatten(), expect[:, 1])

    d = Dendrite(Chain(2, bidirectional=True), Passive(tau_d=2.0), coupling_g=0.5).double()
    _, v = run(d, seq([2.0], [0.0], [0.0]), method)
    # t1: I_0 = 0.5 (0 - 1) = -0.5 -> v_0 = 1 + (-0.5 - 1)/2 = 0.25; v_1 = 0.25
    # t2: no difference -> v = 0.25 + (0 - 0.25)/2 = 0.125 both
    expect = torch.tensor([[1.0, 0.0], [0.25, 0.25], [0.125, 0.125]], dtype=torch.float64)
    assert torch.allclose(v[:, 0, 0], expect)


@pytest.mark.parametrize("method", ["auto", "loop"])
def test_per_edge_coupling(method):
    # KTo1(2, 1): edges 0 -> 2 (g = 1), 1 -> 2 (g = 0.5); inputs 0, 1; output 2
    d = Dendrite(KTo1(2, 1), Passive(tau_d=2.0), coupling_g=[1.0, 0.5]).double()
    _, v = run(d, seq([1.0, 2.0], [0.0, 0.0]), method)
    # t0: v = [0.5, 1, 0];  t1: I_2 = 1 (0.5 - 0) + 0.5 (1 - 0) = 1 -> v = [0.25, 0.5, 0.5]
    expect = torch.tensor([[0.5, 1.0, 0.0], [0.25, 0.5, 0.5]], dtype=torch.float64)
    assert torch.allclose(v[:, 0, 0], expect)
    with pytest.raises(ValueError, match="coupling_g has 3 values but the wiring has 2 edges"):
        Dendrite(KTo1(2, 1), coupling_g=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="coupling_g must be >= 0"):
        Dendrite(KTo1(2, 1), coupling_g=-1.0)


def _random_dendrite(wiring, compartment, learn_g=True):
    torch.manual_seed(0)
    d = Dendrite(wiring, compartment, coupling_g=0.3, learn_g=learn_g).double()
    x = torch.randn(5, 2, 3, wiring.n_input, dtype=torch.float64)
    v0 = torch.randn(2, 3, wiring.n_compartments, dtype=torch.float64)
    return d, x, v0


@pytest.mark.parametrize(
    "wiring, compartment, path",
    [
        (Segregated(3), Passive(tau_d=3.0, v_rest=0.2), "segregated"),
        (Segregated(2), Active(activation="sigmoid"), "segregated"),
        (KTo1(2, 2, bidirectional=True), Passive(tau_d=2.5, decay_input=False), "coupled"),
        (Tree([-1, 0, 0, 1]), Passive(tau_d=2.0, v_rest=-0.1), "coupled"),
        (Chain(3), Active(activation="threshold_linear", theta_d=0.1), "loop"),
    ],
)
def test_all_at_once_equals_step_loop(wiring, compartment, path):
    d, x, v0 = _random_dendrite(wiring, compartment)
    assert d.path() == path
    for start in (None, v0):
        x1 = x.clone().requires_grad_()
        vp1, v1 = run(d, x1, "auto")
        g1 = torch.autograd.grad((v1 * torch.cos(v1)).sum(), [x1] + list(d.parameters()))
        x2 = x.clone().requires_grad_()
        vp2, v2 = run(d, x2, "loop")
        g2 = torch.autograd.grad((v2 * torch.cos(v2)).sum(), [x2] + list(d.parameters()))
        assert torch.allclose(vp1, vp2) and torch.allclose(v1, v2)
        for a, b in zip(g1, g2):
            assert torch.allclose(a, b)


@pytest.mark.parametrize("wiring", [Segregated(2), KTo1(2, 1, bidirectional=True)])
def test_gradcheck_all_at_once(wiring):
    d, x, v0 = _random_dendrite(wiring, Passive(tau_d=2.0, v_rest=0.1))
    x, v0 = x[:3, :1, :2].clone().requires_grad_(), v0[:1, :2].clone().requires_grad_()
    params = dict(d.named_parameters())

    def f(x, v0, *g):
        return functional_call(d, dict(zip(params, g)), (x, v0), strict=False)[1]

    d.method = "auto"
    assert torch.autograd.gradcheck(f, (x, v0, *params.values()))


def test_fixed_coupling_operator_is_rebuilt_when_g_changes():
    d, x, _ = _random_dendrite(KTo1(2, 1), Passive(), learn_g=False)
    run(d, x, "auto")
    with torch.no_grad():
        d.g.fill_(0.9)  # as load_state_dict does (in place)
    assert torch.allclose(run(d, x, "auto")[1], run(d, x, "loop")[1])


# --- synapses ---------------------------------------------------------------------------------------
def test_dend_linear_shapes_and_one_matmul_per_sequence():
    syn = DendLinear(4, n_neurons=3, k_in=2)
    assert syn.weight.shape == (6, 4) and isinstance(syn, torch.nn.Linear)
    x = torch.randn(5, 2, 4)
    y = syn(x)
    assert y.shape == (5, 2, 6)
    syn.step_mode = "s"
    assert torch.allclose(torch.stack([syn(x[t]) for t in range(5)]), y, atol=1e-6)


def test_dend_conv_shapes():
    syn = DendConv2d(1, n_channels=2, k_in=3, kernel_size=3, padding=1)
    assert syn.out_channels == 6 and isinstance(syn, torch.nn.Conv2d)
    x = torch.randn(4, 2, 1, 5, 5)
    y = syn(x)
    assert y.shape == (4, 2, 6, 5, 5)
    syn.step_mode = "s"
    assert torch.allclose(torch.stack([syn(x[t]) for t in range(4)]), y, atol=1e-6)


def test_weight_clamp():
    syn = DendLinear(10, 5, k_in=2, wmin=-0.1, wmax=0.05)
    assert syn.weight.min() >= -0.1 and syn.weight.max() <= 0.05  # clamped at construction
    with torch.no_grad():
        syn.weight.fill_(1.0)
        syn.weight[0, 0] = -3.0
    syn.clamp_()
    assert syn.weight[0, 0] == -0.1 and syn.weight[1, 1] == 0.05
    conv = DendConv2d(1, 2, 2, kernel_size=1, wmin=0.0)
    with torch.no_grad():
        conv.weight.fill_(-1.0)
    conv.clamp_()
    assert (conv.weight == 0).all()


def test_masked_linear():
    torch.manual_seed(0)
    syn = MaskedLinear(20, n_neurons=5, k_in=2, sparsity=0.75, mask_seed=3)
    assert syn.mask.dtype == torch.bool and (~syn.mask).sum() == 150  # exactly 75 % of 10 x 20
    assert torch.equal(MaskedLinear(20, 5, 2, sparsity=0.75, mask_seed=3).mask, syn.mask)
    assert (syn.weight[~syn.mask] == 0).all()
    opt = torch.optim.SGD(syn.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        syn(torch.rand(3, 2, 20)).pow(2).sum().backward()
        assert (syn.weight.grad[~syn.mask] == 0).all() and (syn.weight.grad[syn.mask] != 0).any()
        opt.step()
    assert (syn.weight[~syn.mask] == 0).all()
    y = syn(torch.eye(20)[None])  # column j of the masked weight
    assert torch.allclose(y[0], (syn.weight * syn.mask).T + syn.bias)


# --- synaptic filters -------------------------------------------------------------------------------
def test_exp_filter():
    f = ExpFilter(tau_s=2.0)
    x = torch.tensor([1.0, 0.0, 2.0, 0.0])[:, None]
    i = f(x)
    # i = 0.5 i[t-1] + x:  1, 0.5, 2.25, 1.125
    assert torch.allclose(i.flatten(), torch.tensor([1.0, 0.5, 2.25, 1.125]))
    f.reset()
    a = f(x[:2])
    b = f(x[2:])  # continues from i[1] = 0.5
    assert torch.allclose(torch.cat([a, b]), i)
    f.reset()
    f.step_mode = "s"
    assert torch.allclose(torch.stack([f(x[t]) for t in range(4)]), i)
    assert torch.equal(IdentityFilter()(x), x)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Passive(tau_d=1.0), r"tau_d must be a number > 1 \(got tau_d=1.0\)"),
        (lambda: Active(activation="relu6"), r"activation"),
        (lambda: Active(beta=0.0), r"beta"),
        (lambda: ExpFilter(tau_s=0.5), r"tau_s"),
        (lambda: MaskedLinear(4, 2, sparsity=1.0), r"sparsity must be in \[0, 1\) \(got sparsity=1.0\)"),
        (lambda: DendLinear(4, 2, wmin=1.0, wmax=0.0), r"wmin must be < wmax"),
        (lambda: DendLinear(4, 2, k_in=0), r"k_in"),
        (lambda: DendConv2d(1, 0, 2), r"n_channels"),
        (lambda: DendLinear(4, 2, step_mode="x"), r"step_mode"),
        (lambda: Dendrite(Segregated(2), method="scan"), r"method"),
    ],
)
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
