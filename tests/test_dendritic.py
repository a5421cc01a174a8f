"""Dendritic neurons: the update equations by hand, shape conventions, step modes, state, devices."""

import functools
import math

import pytest
import torch

from dendsn.compartments import Active, Passive
from dendsn.dendritic import DendIF, DendLIF
from dendsn.neurons import SpikingModule
from dendsn.surrogate import ATan, StochasticFiring
from dendsn.synapses import DendConv2d, DendLinear, MaskedLinear
from dendsn.wiring import Chain, KTo1, Segregated, Tree

sigmoid = lambda z: 1 / (1 + math.exp(-z))


# --- a literal, scalar transcription of the equations (one neuron, python floats) --------------------
def active_part(active):
    """f(v) of an Active compartment given as (activation, strength, theta_d[, beta])."""
    if active is None:
        return lambda v: 0.0
    if active[0] == "sigmoid":
        _, strength, theta_d, beta = active
        return lambda v: strength * sigmoid(beta * (v - theta_d))
    if active[0] == "tanh":
        _, strength, theta_d, beta = active
        return lambda v: strength * math.tanh(beta * (v - theta_d))
    if active[0] == "softplus":
        _, strength, theta_d, beta = active
        return lambda v: strength * math.log1p(math.exp(beta * (v - theta_d))) / beta
    _, strength, theta_d = active
    return lambda v: strength * max(v - theta_d, 0.0)


def reference(
    x,
    wiring,
    tau_d=2.0,
    decay_d=True,
    v_rest=0.0,
    active=None,
    g=1.0,
    phi=1.0,
    mode="voltage_difference",
    fact=sigmoid,
    soma="lif",
    tau=2.0,
    decay=True,
    v_th=1.0,
    v_reset=0.0,
    psi=0.0,
):
    """x [T][K_in] -> (spikes [T], soma v [T], compartment v [T][K]) for one neuron."""
    K, out = wiring.n_compartments, wiring.output_index
    f = active_part(active)
    g = g if isinstance(g, list) else [g] * wiring.n_edges
    phi = phi if isinstance(phi, list) else [phi] * len(out)
    vr = 0.0 if v_reset is None else v_reset
    vp, vs = [v_rest] * K, vr
    S, V, VD = [], [], []
    for xt in x:
        vd = [p + f(p) for p in vp]  # v[t-1]
        I = [0.0] * K
        for k, j in enumerate(wiring.input_index):
            I[j] += xt[k]
        for (i, j), gij in zip(wiring.edges, g):
            I[j] += gij * (vd[i] - vd[j])
        for k in range(K):
            if decay_d:
                vp[k] = vp[k] + (I[k] - (vp[k] - v_rest)) / tau_d
            else:
                vp[k] = vp[k] - (vp[k] - v_rest) / tau_d + I[k]
        vd = [p + f(p) for p in vp]  # v[t]
        if mode == "voltage_difference":
            J = sum(ph * (vd[k] - vs) for ph, k in zip(phi, out))
        else:
            J = sum(ph * fact(vd[k]) for ph, k in zip(phi, out))
        if soma == "if":
            h = vs + J
        elif decay:
            h = vs + (J - (vs - vr)) / tau
        else:
            h = vs - (vs - vr) / tau + J
        s = 1.0 if h >= v_th else 0.0
        vs = (v_reset if s else h) if v_reset is not None else h - v_th * s
        for k in out:
            vp[k] += psi * s
        S.append(s)
        V.append(vs)
        VD.append([p + f(p) for p in vp])
    return S, V, VD


CASES = {  # name: (wiring, reference arguments, extra model arguments, input scale)
    "segregated_vdiff": (Segregated(3), dict(phi=0.3), {}, 5),
    "segregated_vdiff_phi_list_no_decay": (
        Segregated(2),
        dict(phi=[0.2, 0.1], decay=False, tau_d=3.0, decay_d=False),
        {},
        3,
    ),
    "kto1_coupled_activation": (KTo1(2, 2), dict(mode="activation", g=0.8, phi=[1.0, 1.5], v_rest=-0.2), {}, 5),
    "tree_bidirectional_soft_reset": (
        Tree([-1, 0, 0, 1], bidirectional=True),
        dict(g=0.8, phi=1.5, v_reset=None),
        {},
        8,
    ),
    "chain_bap_if": (Chain(3, input_index=[0, 1]), dict(soma="if", g=[0.5, 0.8], phi=0.4, psi=0.7), {}, 8),
    "segregated_bap_identity": (
        Segregated(2),
        dict(mode="activation", fact=lambda v: v, phi=0.6, psi=0.5),
        {"forward_activation": "identity"},
        3,
    ),
    "active_sigmoid_coupled": (
        KTo1(2, 1, bidirectional=True),
        dict(g=0.9, phi=1.5, tau=3.0, active=("sigmoid", 0.8, 0.5, 4.0), v_reset=-0.1),
        {},
        3,
    ),
    "active_threshold_linear_segregated": (Segregated(2), dict(phi=0.4, active=("threshold_linear", 1.5, 0.3)), {}, 3),
    "active_tanh_coupled": (KTo1(2, 1), dict(g=0.3, phi=1.2, active=("tanh", 0.7, 0.4, 3.0)), {}, 8),
    "active_softplus_segregated": (Segregated(2), dict(phi=0.5, active=("softplus", 1.2, 0.3, 4.0)), {}, 3),
    "activation_tanh": (
        KTo1(2, 2),
        dict(mode="activation", fact=math.tanh, g=0.3, phi=0.9),
        {"forward_activation": "tanh"},
        5,
    ),
    "negative_bap_chain": (Chain(3, input_index=[0, 1]), dict(g=[0.5, 0.8], phi=0.6, psi=-0.3), {}, 14),
}


def build(wiring, ref, extra=None, **kw):
    """The DendLIF / DendIF configured like ``reference(**ref)``."""
    active = ref.get("active")
    comp_kw = dict(tau_d=ref.get("tau_d", 2.0), decay_input=ref.get("decay_d", True), v_rest=ref.get("v_rest", 0.0))
    if active is None:
        comp = Passive(**comp_kw)
    elif active[0] in ("sigmoid", "tanh", "softplus"):
        comp = Active(activation=active[0], strength=active[1], theta_d=active[2], beta=active[3], **comp_kw)
    else:
        comp = Active(activation="threshold_linear", strength=active[1], theta_d=active[2], **comp_kw)
    args = dict(
        compartment=comp,
        coupling_g=ref.get("g", 1.0),
        phi=ref.get("phi", 1.0),
        forward_mode=ref.get("mode", "voltage_difference"),
        v_threshold=ref.get("v_th", 1.0),
        v_reset=ref.get("v_reset", 0.0),
        bap_psi=ref.get("psi", 0.0),
        **(extra or {}),
        **kw,
    )
    if ref.get("soma", "lif") == "if":
        return DendIF(wiring, **args)
    return DendLIF(wiring, tau=ref.get("tau", 2.0), decay_input=ref.get("decay", True), **args)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("method", ["auto", "loop"])
def test_matches_reference_equations(case, method):
    wiring, ref, extra, scale = CASES[case]
    torch.manual_seed(1)
    T, B, S = 6, 2, 2
    x = torch.rand(T, B, S * wiring.n_input, dtype=torch.float64) * scale - 0.5
    n = build(wiring, ref, extra, dendrite_method=method).double()
    n.store_seq = True
    s = n(x)
    assert s.shape == (T, B, S) and 0 < s.sum() < s.numel()  # some spikes, not all
    xs = x.view(T, B, S, wiring.n_input)
    for b in range(B):
        for i in range(S):
            S_, V_, VD_ = reference(xs[:, b, i].tolist(), wiring, **ref)
            assert s[:, b, i].tolist() == S_
            assert torch.allclose(n.v_seq[:, b, i], torch.tensor(V_, dtype=torch.float64))
            assert torch.allclose(n.v_dend_seq[:, b, i], torch.tensor(VD_, dtype=torch.float64))
    assert torch.equal(n.v, n.v_seq[-1]) and torch.equal(n.v_dend, n.v_dend_seq[-1])


def test_voltage_difference_by_hand():
    # Segregated(2), tau_d = 2; LIF tau = 2 (decay_input), phi = 0.5, v_threshold = 1
    x = torch.tensor([[4.0, 4.0], [4.0, 4.0], [2.0, 2.0]])[:, None, :]  # [T=3, B=1, S*K = 2]
    # dendrite: v_k = 2, 3, 3 + (2 - 3)/2 = 2.5
    # hard reset: t0 J = 0.5 (2 - 0) 2 = 2,   h = 0 + (2 - 0)/2 = 1    -> spike, v = 0
    #             t1 J = 0.5 (3 - 0) 2 = 3,   h = 3/2 = 1.5            -> spike, v = 0
    #             t2 J = 0.5 (2.5 - 0) 2 = 2.5, h = 1.25               -> spike, v = 0
    n = DendLIF(Segregated(2), phi=0.5)
    assert n(x).flatten().tolist() == [1.0, 1.0, 1.0] and n.v.item() == 0.0
    assert torch.allclose(n.v_dend, torch.tensor([[[2.5, 2.5]]]))
    # soft reset: t1 v = 1.5 - 1 = 0.5;  t2 J = 0.5 (2.5 - 0.5) 2 = 2, h = 0.5 + (2 - 0.5)/2 = 1.25 -> v = 0.25
    n = DendLIF(Segregated(2), phi=0.5, v_reset=None)
    assert n(x).flatten().tolist() == [1.0, 1.0, 1.0]
    assert math.isclose(n.v.item(), 0.25, abs_tol=1e-6)


def test_soma_terms_derivation():
    # J = a - Phi v  ->  h = alpha' v + u';  phi = [0.5, 0.25] (Phi = 0.75), a = 0.5 v_0 + 0.25 v_1
    v_out = torch.tensor([[2.0, 4.0]])  # a = 2
    n = DendLIF(Segregated(2), tau=4.0, v_reset=0.5, phi=[0.5, 0.25])
    alpha, u = n.soma_terms(v_out)
    assert math.isclose(float(alpha), 1 - (1 + 0.75) / 4) and math.isclose(u.item(), (2 + 0.5) / 4)
    n = DendLIF(Segregated(2), tau=4.0, decay_input=False, v_reset=0.5, phi=[0.5, 0.25])
    alpha, u = n.soma_terms(v_out)
    assert math.isclose(float(alpha), 1 - 1 / 4 - 0.75) and math.isclose(u.item(), 2 + 0.5 / 4)
    n = DendIF(Segregated(2), phi=[0.5, 0.25])
    alpha, u = n.soma_terms(v_out)
    assert math.isclose(float(alpha), 1 - 0.75) and math.isclose(u.item(), 2.0)


def test_activation_forward_by_hand():
    # J = phi_0 sigmoid(v_0) + phi_1 sigmoid(v_1), v = x/2 at t0; IF soma: h = J
    n = DendIF(Segregated(2), forward_mode="activation", phi=[1.0, 0.5])
    s = n(torch.tensor([[[2.0, 4.0]]]))
    J = sigmoid(1.0) + 0.5 * sigmoid(2.0)  # 1.1715 >= 1
    assert s.item() == 1.0 and n.v.item() == 0.0
    n = DendIF(Segregated(2), forward_mode="activation", phi=[1.0, 0.5], v_reset=None)
    n(torch.tensor([[[2.0, 4.0]]]))
    assert math.isclose(n.v.item(), J - 1.0, rel_tol=1e-6)


def test_back_propagating_spike_by_hand():
    # Segregated(1), tau_d = 2; IF soma, J = v_dend (identity activation, phi = 1); x = 4, 0, 0
    x = torch.tensor([4.0, 0.0, 0.0])[:, None, None]
    n = DendIF(Segregated(1), forward_mode="activation", forward_activation="identity", bap_psi=0.5)
    n.store_seq = True
    # t0: v_d = 2, h = 2 -> spike, v = 0, BAP v_d = 2.5
    # t1: v_d = 2.5 + (0 - 2.5)/2 = 1.25 -> spike, BAP v_d = 1.75
    # t2: v_d = 0.875, h = 0.875 -> no spike
    assert n(x).flatten().tolist() == [1.0, 1.0, 0.0]
    assert torch.allclose(n.v_dend_seq.flatten(), torch.tensor([2.5, 1.75, 0.875]))
    assert math.isclose(n.v.item(), 0.875)
    n = DendIF(Segregated(1), forward_mode="activation", forward_activation="identity")
    n(x)  # no BAP: v_d = 2, 1, 0.5
    assert math.isclose(n.v.item(), 0.5) and math.isclose(n.v_dend.item(), 0.5)


# --- shape conventions --------------------------------------------------------------------------
def test_linear_input_is_neuron_major():
    # S = 2 neurons x K_in = 3: feature s * 3 + k; one-hot feature 5 -> neuron 1, compartment 2
    n = DendLIF(Segregated(3))
    x = torch.zeros(1, 1, 6)
    x[0, 0, 5] = 1.0
    assert n(x).shape == (1, 1, 2)
    hit = torch.zeros(1, 2, 3)
    hit[0, 1, 2] = 0.5  # (1 - 0)/tau_d
    assert torch.equal(n.v_dend, hit)
    # the synapse follows the same layout: output feature s * K_in + k
    syn = DendLinear(4, n_neurons=2, k_in=3)
    with torch.no_grad():
        syn.weight.zero_(), syn.bias.zero_()
        syn.weight[1 * 3 + 2, 0] = 2.0
    n.reset()
    n(syn(torch.tensor([[[1.0, 0, 0, 0]]])))
    assert n.v_dend[0, 1, 2] == 1.0 and n.v_dend.count_nonzero() == 1


def test_conv_input_is_compartment_major():
    # K_in = 3, C = 2: channel k * C + c; one-hot channel 5 -> compartment 2 of channel 1
    n = DendLIF(KTo1(3, 1))  # inputs 0..2, output 3
    x = torch.zeros(1, 1, 6, 2, 2)
    x[0, 0, 5, 0, 1] = 1.0
    assert n(x).shape == (1, 1, 2, 2, 2)
    assert n.v_dend.shape == (1, 2, 2, 2, 4)
    hit = torch.zeros(1, 2, 2, 2, 4)
    hit[0, 1, 0, 1, 2] = 0.5
    assert torch.equal(n.v_dend, hit)
    n.step_mode = "s"
    n.reset()
    assert n(x[0]).shape == (1, 2, 2, 2) and torch.equal(n.v_dend, hit)
    syn = DendConv2d(1, n_channels=2, k_in=3, kernel_size=1, bias=False)
    with torch.no_grad():
        syn.weight.zero_()
        syn.weight[2 * 2 + 1] = 2.0  # out channel k=2, c=1
    n.step_mode = "m"
    n.reset()
    n(syn(torch.ones(1, 1, 1, 2, 2)))
    assert (n.v_dend[..., 1, :, :, 2] == 1.0).all() and n.v_dend.count_nonzero() == 4


def test_bad_input_shapes():
    n = DendLIF(Segregated(3))
    with pytest.raises(ValueError, match="not a multiple of K_in=3"):
        n(torch.zeros(2, 1, 7))
    with pytest.raises(ValueError, match="channels, not a multiple of K_in=3"):
        n(torch.zeros(2, 1, 4, 2, 2))


# --- step modes, state ------------------------------------------------------------------------------
SINGLE_MULTI = {
    "segregated_learn_phi": (Segregated(3), dict(phi=0.3, learn_phi=True, surrogate=ATan())),
    "coupled_active_learn_g": (
        KTo1(2, 2),
        dict(
            compartment=Active(learn_strength=True),
            learn_g=True,
            coupling_g=0.5,
            forward_mode="activation",
            phi=[0.8, 0.9],
            learn_phi=True,
        ),
    ),
    "chain_bap_soft_detach": (
        Chain(3, input_index=[0, 1]),
        dict(bap_psi=0.3, v_reset=None, detach_reset=True, phi=1.5),
    ),
    "tree_if": (Tree([-1, 0, 0]), dict(phi=0.5, learn_g=True)),
}


@pytest.mark.parametrize("case", sorted(SINGLE_MULTI))
def test_single_step_equals_multi_step(case):
    wiring, kw = SINGLE_MULTI[case]
    cls = DendIF if case.endswith("_if") else DendLIF
    torch.manual_seed(2)
    x = (torch.rand(5, 2, 3 * wiring.n_input, dtype=torch.float64) * 6).requires_grad_()
    n = cls(wiring, **kw).double()
    n.store_seq = True
    s_m = n(x)
    grads_m = torch.autograd.grad((s_m.sum() + (n.v_seq**2).sum()), [x] + list(n.parameters()))
    v_m, vd_m = n.v, n.v_dend
    n.reset()
    n.step_mode = "s"
    s_list, v_list = [], []
    for t in range(5):
        s_list.append(n(x[t]))
        v_list.append(n.v)
    s_s = torch.stack(s_list)
    grads_s = torch.autograd.grad((s_s.sum() + (torch.stack(v_list) ** 2).sum()), [x] + list(n.parameters()))
    assert torch.equal(s_m, s_s) and 0 < s_m.sum() < s_m.numel()
    assert torch.allclose(v_m, n.v) and torch.allclose(vd_m, n.v_dend)
    for a, b in zip(grads_m, grads_s):
        assert torch.allclose(a, b)
    assert any(g.abs().sum() > 0 for g in grads_m[1:]) or not list(n.parameters())


def test_state_continues_and_resets():
    torch.manual_seed(3)
    n = DendLIF(KTo1(2, 1), phi=0.5)
    x = torch.rand(6, 2, 4) * 3
    s_all = n(x)
    v_all = n.v
    n.reset()
    assert n.v is None and n.v_dend is None and n.v_seq is None
    s_a, s_b = n(x[:3]), n(x[3:])  # continues from the kept state
    assert torch.equal(torch.cat([s_a, s_b]), s_all) and torch.allclose(n.v, v_all)
    assert n.v_seq is None and n.v_dend_seq is None  # sequences only with store_seq


def test_store_seq_values():
    n = DendLIF(Segregated(2), phi=0.5)
    n.store_seq = True
    n(torch.tensor([[4.0, 4.0], [4.0, 4.0], [2.0, 2.0]])[:, None, :])
    assert n.v_seq.shape == (3, 1, 1) and n.v_dend_seq.shape == (3, 1, 1, 2)
    assert torch.allclose(n.v_dend_seq[:, 0, 0, 0], torch.tensor([2.0, 3.0, 2.5]))


# --- parameters, state_dict, devices ------------------------------------------------------------------
def _learnable_layer():
    return torch.nn.Sequential(
        MaskedLinear(6, n_neurons=3, k_in=4, sparsity=0.3),
        DendLIF(
            KTo1(2, 2),
            compartment=Active(strength=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0], learn_strength=True),
            learn_g=True,
            coupling_g=[0.1, 0.2, 0.3, 0.4],
            learn_phi=True,
            phi=[0.3, 0.4],
        ),
    )


def test_state_dict_round_trip():
    torch.manual_seed(4)
    a = _learnable_layer()
    with torch.no_grad():
        for p in a.parameters():
            p.add_(torch.rand_like(p) * 0.1)
    b = _learnable_layer()
    b.load_state_dict(a.state_dict())
    x = (torch.rand(5, 2, 6) < 0.7).float()
    a[1].store_seq = b[1].store_seq = True
    assert torch.equal(a(x), b(x)) and torch.equal(a[1].v_seq, b[1].v_seq)
    keys = set(a.state_dict())
    assert {"1.phi", "1.dendrite.g", "1.dendrite.compartment.strength", "0.mask", "0.weight"} <= keys


def test_double_moves_every_parameter_and_buffer():
    m = _learnable_layer().double()
    for name, t in list(m.named_parameters()) + list(m.named_buffers()):
        if t.is_floating_point():
            assert t.dtype == torch.float64, name
    assert m[0].mask.dtype == torch.bool
    y = m(torch.rand(4, 2, 6, dtype=torch.float64) * 3)
    assert y.dtype == torch.float64 and m[1].v.dtype == torch.float64
    fixed = DendLIF(KTo1(2, 1), compartment=Active()).double()  # fixed g, phi, strength are buffers
    assert {t.dtype for t in fixed.buffers() if t.is_floating_point()} == {torch.float64}
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    moved = _learnable_layer().to(dev)
    assert {t.device.type for t in list(moved.parameters()) + list(moved.buffers())} == {torch.device(dev).type}
    # a tensor kept as a plain attribute would stay behind: "meta" shows a move without a second device
    for layer in (_learnable_layer(), DendLIF(KTo1(2, 1), compartment=Active())):
        moved = layer.to("meta")
        assert {t.device.type for t in list(moved.parameters()) + list(moved.buffers())} == {"meta"}
        tensors = [(n, v) for mod in moved.modules() for n, v in vars(mod).items() if isinstance(v, torch.Tensor)]
        assert all(v.device.type == "meta" for _, v in tensors), [n for n, v in tensors if v.device.type != "meta"]


def test_partial_calls_create_fresh_parameters():
    # a Hydra `_partial_: true` neuron shares its constructor objects between layers
    make = functools.partial(DendLIF, wiring=KTo1(2, 1), compartment=Active(learn_strength=True), learn_g=True)
    n1, n2 = make(), make()
    assert n1.inputs_per_neuron == 2 and SpikingModule.inputs_per_neuron == 1
    ids1 = {id(p) for p in n1.parameters()}
    assert ids1 and not ids1 & {id(p) for p in n2.parameters()}
    with torch.no_grad():
        n1.dendrite.compartment.strength.add_(1.0)
    assert n2.dendrite.compartment.strength.item() == 1.0


# --- stochastic firing --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, f_max, beta", [("logistic", 0.5, 2.0), ("exponential", 0.2, 1.0)])
def test_stochastic_firing_rate_and_gradient(kind, f_max, beta):
    torch.manual_seed(5)
    B = 20000
    firing = StochasticFiring(kind, f_max=f_max, beta=beta)
    # Segregated(1), tau_d = 2: v_d = x/2; IF soma with identity activation: h = v_d = 1.1
    n = DendIF(Segregated(1), forward_mode="activation", forward_activation="identity", firing=firing)
    x = torch.full((1, B, 1), 2.2, requires_grad=True)
    s = n(x)
    z = 1.1 - 1.0
    if kind == "logistic":
        p = 2 * f_max * sigmoid(beta * z)
        dp = 2 * f_max * beta * sigmoid(beta * z) * (1 - sigmoid(beta * z))
    else:
        p = f_max * math.exp(beta * z)
        dp = beta * p
    assert abs(s.mean().item() - p) < 0.02  # 5 standard errors
    s.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, dp * 0.5))  # dp/dx * dh/dx (dh/dx = 1/tau_d)


# --- validation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DendLIF(Segregated(2), tau=1.0), r"tau must be > 1 \(got tau=1.0\)"),
        (lambda: DendLIF(Segregated(2), phi=[1.0]), r"phi has 1 values but the wiring has 2 output"),
        (lambda: DendLIF(Segregated(2), phi=-1.0), r"phi must be >= 0"),
        (lambda: DendLIF(Segregated(2), forward_mode="current"), r"forward_mode"),
        (lambda: DendLIF(Segregated(2), forward_mode="activation", forward_activation="gelu"), r"forward_activation"),
        (lambda: DendLIF(Segregated(2), bap_psi=float("nan")), r"bap_psi must be a finite number"),
        (lambda: DendLIF(Segregated(2), compartment=Active(activation="swish")), r"activation must be one of"),
        (lambda: DendLIF(Segregated(2), v_reset=1.0), r"v_reset must be below v_threshold"),
        (lambda: DendLIF(Segregated(2), dendrite_method="fast"), r"method"),
        (lambda: DendLIF("segregated"), r"wiring must be"),
        (lambda: DendIF(Segregated(2), step_mode="x"), r"step_mode"),
    ],
)
def test_invalid_neuron_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
