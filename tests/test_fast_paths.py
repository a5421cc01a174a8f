"""The speed paths compute what the reference paths compute.

The dendritic neuron's shortcuts (`DendriticNeuron._drive_at_once`: rank-1 read-out of a passive
dendrite, fused active scan, fused coupled loop) are checked against the general path, which forms
every compartment for every step (``store_seq=True`` takes it), and the soma kernel's in-loop gain
and per-step backward against autograd through `soma.single_step`.
"""

import pytest
import torch

from dendsn import soma, surrogate
from dendsn.compartments import Active, Passive
from dendsn.dendritic import DendIF, DendLIF
from dendsn.dendritic import fast as readout
from dendsn.wiring import Chain, KTo1, Segregated, Tree

NEURONS = {
    "segregated": lambda: DendLIF(Segregated(4)),
    "segregated_phi_list": lambda: DendLIF(Segregated(3), phi=[0.2, 0.5, 0.1]),
    "kto1_4x1": lambda: DendLIF(KTo1(4, 1)),
    "kto1_2x2_phi_list": lambda: DendLIF(KTo1(2, 2), phi=[0.3, 0.6]),
    "kto1_bidirectional": lambda: DendLIF(KTo1(2, 2, bidirectional=True), coupling_g=0.4),
    "chain": lambda: DendLIF(Chain(3)),
    "tree": lambda: DendLIF(Tree([-1, 0, 0, 1, 1, 2, 2])),
    "v_rest_v_reset_no_decay": lambda: DendLIF(
        Segregated(2), compartment=Passive(v_rest=0.3, decay_input=False, tau_d=3.0), v_reset=-0.2, tau=3.0
    ),
    "if_soft_reset": lambda: DendIF(KTo1(2, 1), v_reset=None, phi=0.7),
    "activation_identity": lambda: DendLIF(
        Segregated(2), forward_mode="activation", forward_activation="identity", phi=0.5
    ),
    "active_sigmoid_segregated": lambda: DendLIF(Segregated(4), compartment=Active(activation="sigmoid")),
    "active_per_branch": lambda: DendLIF(
        Segregated(3),
        phi=[0.2, 0.3, 0.4],
        compartment=Active(activation="sigmoid", v_rest=0.2, strength=[0.5, 1.0, 1.5]),
    ),
    "active_threshold_linear_gain": lambda: DendLIF(
        Segregated(2), compartment=Active(activation="threshold_linear", theta_d=0.3, strength=1.5, decay_input=True)
    ),
    "active_coupled_kto1": lambda: DendLIF(KTo1(2, 2), compartment=Active(activation="sigmoid")),
    "active_tanh_segregated": lambda: DendLIF(
        Segregated(3), compartment=Active(activation="tanh", theta_d=0.3, beta=3.0)
    ),
    "active_softplus_per_branch": lambda: DendLIF(
        Segregated(2), compartment=Active(activation="softplus", beta=4.0, strength=[0.5, 1.5])
    ),
    "active_coupled_tanh": lambda: DendIF(KTo1(2, 1), compartment=Active(activation="tanh"), phi=0.8),
    "active_coupled_tree_if": lambda: DendIF(
        Tree([-1, 0, 0, 1]), compartment=Active(activation="sigmoid"), v_reset=None, phi=0.6
    ),
    "active_coupled_threshold_linear": lambda: DendLIF(
        KTo1(3, 1, bidirectional=True),
        phi=0.7,
        coupling_g=[0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
        compartment=Active(activation="threshold_linear", theta_d=0.2, v_rest=0.1, strength=[0.5, 1, 1.5, 2.0]),
    ),
}


def _run(make, x, general: bool, chunks: bool):
    n = make().double()
    n.store_seq = general  # store_seq takes the general path
    xx = x.clone().requires_grad_()
    s = torch.cat([n(xx[:3]), n(xx[3:])]) if chunks else n(xx)
    w = torch.randn(s.shape, generator=torch.Generator().manual_seed(5), dtype=s.dtype)
    (g,) = torch.autograd.grad((s * w).sum() + (n.v**2).sum() + n.v_dend.sum(), xx)
    return s, n.v, n.v_dend, n.v_dend_p, g


@pytest.mark.parametrize("chunks", [False, True], ids=["one_call", "state_continues"])
@pytest.mark.parametrize("name", sorted(NEURONS))
def test_fast_path_equals_general_path(name, chunks):
    make = NEURONS[name]
    torch.manual_seed(0)
    # some spikes, not all (coupled wirings pass a fraction of their input on: the default conductance
    # is the largest for which no compartment overshoots)
    scale = 12 if name in ("chain", "kto1_bidirectional", "kto1_4x1", "kto1_2x2_phi_list", "tree") else 5
    x = torch.rand(6, 4, 5 * make().inputs_per_neuron, dtype=torch.float64) * scale - 0.5
    fast, general = _run(make, x, False, chunks), _run(make, x, True, chunks)
    assert torch.equal(fast[0], general[0]) and 0 < fast[0].sum() < fast[0].numel()
    for a, b in zip(fast[1:], general[1:]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_fast_path_is_taken_for_the_default_neurons():
    for make in (
        NEURONS["segregated"],
        NEURONS["kto1_2x2_phi_list"],
        NEURONS["active_sigmoid_segregated"],
        NEURONS["active_coupled_kto1"],
    ):
        n = make()
        n(torch.rand(4, 2, 3 * n.inputs_per_neuron))
        assert readout.cached_terms(n)[0] is not None


def test_conv_layout_fast_path():
    for make in (lambda: DendLIF(KTo1(3, 1)), lambda: DendLIF(Segregated(2), compartment=Active(activation="sigmoid"))):
        k = make().inputs_per_neuron
        torch.manual_seed(1)
        x = torch.rand(5, 2, 2 * k, 3, 3, dtype=torch.float64) * 5 - 0.5  # [T, B, K_in * C, H, W]
        fast, general = _run(make, x, False, False), _run(make, x, True, False)
        assert torch.equal(fast[0], general[0])
        for a, b in zip(fast[1:], general[1:]):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "firing",
    [surrogate.Sigmoid(4.0), surrogate.ATan(), surrogate.Triangle(), surrogate.SuperSpike()],
    ids=lambda f: type(f).__name__,
)
@pytest.mark.parametrize("v_reset", [0.0, -0.3, None])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_soma_kernel_matches_single_step_autograd(firing, v_reset, detach_reset):
    torch.manual_seed(3)
    x = (torch.randn(7, 3, 11, dtype=torch.float64) * 1.5 + 0.6).requires_grad_()
    v0 = (torch.rand(3, 11, dtype=torch.float64) * 0.5).requires_grad_()
    w_s, w_v = torch.randn(7, 3, 11, dtype=torch.float64), torch.randn(3, 11, dtype=torch.float64)
    s_m, v_m, _, _ = soma.multi_step(x, v0, 0.6, 1.0, v_reset, firing, detach_reset, gain=0.5)  # drive 0.5 x
    g_m = torch.autograd.grad((s_m * w_s).sum() + (v_m * w_v).sum(), [x, v0])
    v, s_list = v0, []
    for t in range(7):
        s, v, _ = soma.single_step(0.5 * x[t], v, 0.6, 1.0, v_reset, firing, detach_reset)
        s_list.append(s)
    s_s = torch.stack(s_list)
    g_s = torch.autograd.grad((s_s * w_s).sum() + (v * w_v).sum(), [x, v0])
    assert torch.equal(s_m, s_s) and 0 < s_m.sum() < s_m.numel()
    torch.testing.assert_close(v_m, v)
    for a, b in zip(g_m, g_s):
        torch.testing.assert_close(a, b)
