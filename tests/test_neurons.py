"""Point neurons and the fused soma kernel: hand-computed values, SpikingJelly parity, gradients."""

import pytest
import torch
from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based import surrogate as sj_surrogate

from dendsn import neurons, soma, surrogate


def test_lif_hard_reset_by_hand():
    """tau=2, decay_input: h = v + (x - v)/2; spike at h >= 1; hard reset to 0."""
    x = torch.tensor([[1.5], [1.0], [0.8], [3.0]]).unsqueeze(1)  # [T=4, B=1, 1]
    lif = neurons.LIF(tau=2.0)
    s = lif(x)
    # v: 0 -> h=0.75 (no) -> h=0.75+0.125=0.875 (no) -> h=0.875+(0.8-0.875)/2=0.8375 (no) -> h=0.8375+1.08125=1.91875 spike -> 0
    assert s.flatten().tolist() == [0.0, 0.0, 0.0, 1.0]
    assert lif.v.item() == 0.0


def test_lif_soft_reset_and_no_decay_input_by_hand():
    """decay_input=False: h = v - v/tau + x; soft reset subtracts the threshold."""
    x = torch.tensor([1.2, 0.5, 0.9]).view(3, 1, 1)
    lif = neurons.LIF(tau=4.0, decay_input=False, v_reset=None)
    s = lif(x)
    # h1 = 1.2 -> spike, v = 0.2; h2 = 0.2 - 0.05 + 0.5 = 0.65; h3 = 0.65 - 0.1625 + 0.9 = 1.3875 -> spike, v = 0.3875
    assert s.flatten().tolist() == [1.0, 0.0, 1.0]
    assert lif.v.item() == pytest.approx(0.3875)


def test_if_integrates_without_leak():
    s = neurons.IF()(torch.full((5, 1, 1), 0.4))
    assert s.flatten().tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]  # 0.4, 0.8, 1.2 -> reset, 0.4, 0.8


@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("decay_input", [True, False])
def test_lif_matches_spikingjelly(v_reset, detach_reset, decay_input):
    torch.manual_seed(0)
    x = (torch.randn(8, 4, 16) * 1.5).requires_grad_()
    w = torch.randn(16)
    ours = neurons.LIF(tau=2.0, decay_input=decay_input, v_reset=v_reset, detach_reset=detach_reset)
    theirs = sj_neuron.LIFNode(
        tau=2.0,
        decay_input=decay_input,
        v_reset=v_reset,
        detach_reset=detach_reset,
        step_mode="m",
        surrogate_function=sj_surrogate.Sigmoid(alpha=4.0),
    )
    s1, s2 = ours(x), theirs(x)
    (g1,) = torch.autograd.grad((s1 * w).sum(), x)
    (g2,) = torch.autograd.grad((s2 * w).sum(), x)
    assert torch.equal(s1, s2)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.v, theirs.v)


@pytest.mark.parametrize("cls", [neurons.LIF, neurons.IF, neurons.PLIF])
@pytest.mark.parametrize("v_reset", [0.0, None])
def test_single_step_equals_multi_step_values_and_grads(cls, v_reset):
    torch.manual_seed(1)
    x = torch.randn(6, 3, 10).requires_grad_()
    w = torch.randn(10)
    multi, single = cls(v_reset=v_reset), cls(v_reset=v_reset, step_mode="s")
    single.load_state_dict(multi.state_dict())
    sm = multi(x)
    ss = torch.stack([single(x[t]) for t in range(6)])
    assert torch.equal(sm, ss)
    pm = [x, *multi.parameters()]
    ps = [x, *single.parameters()]
    for a, b in zip(torch.autograd.grad((sm * w).sum(), pm), torch.autograd.grad((ss * w).sum(), ps)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_soma_kernel_gradcheck_float64():
    """With detach_reset, the potentials' gradients are true gradients (spikes are piecewise constant),
    so the hand-written backward must match finite differences for u, v0 and a tensor alpha.
    (The surrogate path is checked against autograd's single-step version above.)"""
    torch.manual_seed(2)
    for v_reset in (0.0, None):
        u = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
        v0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
        alpha = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)

        def f(u, v0, alpha):
            s, v, h, _ = soma.multi_step(u, v0, alpha, 0.5, v_reset, surrogate.Sigmoid(4.0), True)
            return v, h

        assert torch.autograd.gradcheck(f, (u, v0, alpha), eps=1e-6, atol=1e-6)


def test_plif_learns_its_time_constant():
    plif = neurons.PLIF(tau=3.0)
    assert plif.tau == pytest.approx(3.0)
    x = torch.rand(8, 4, 5)
    (plif(x).sum()).backward()
    assert plif.w.grad is not None and plif.w.grad.abs() > 0


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"tau": 1.0}, "tau must be > 1"),
        ({"v_reset": 1.0}, "v_reset must be below v_threshold"),
        ({"step_mode": "x"}, "step_mode"),
    ],
)
def test_bad_parameters_name_themselves(kw, match):
    with pytest.raises(ValueError, match=match):
        neurons.LIF(**kw)


def test_stochastic_firing_rate_and_gradient():
    torch.manual_seed(3)
    f = surrogate.StochasticFiring("logistic", f_max=0.5, beta=2.0)
    x = torch.full((200_000,), 0.3)
    p = f.probability(x)[0].item()
    assert p == pytest.approx(2 * 0.5 * torch.sigmoid(torch.tensor(0.6)).item())
    assert f.spike(x).mean().item() == pytest.approx(p, abs=0.005)
    xg = torch.tensor([0.3], requires_grad=True)
    f(xg).sum().backward()
    sg = torch.sigmoid(torch.tensor(0.6))
    assert xg.grad.item() == pytest.approx((2 * 0.5 * 2.0 * sg * (1 - sg)).item())
    det = surrogate.StochasticFiring("exponential", f_max=0.2, beta=1.0, deterministic_eval=True)
    assert det.spike(torch.tensor([0.0, 1.0]), training=False).tolist() == [0.0, 1.0]  # p = 0.2, 0.54


def test_firing_factory_names_deterministic_or_stochastic():
    assert surrogate.firing("deterministic") is None
    f = surrogate.firing("exponential", f_max=0.3, beta=2.0)
    assert isinstance(f, surrogate.StochasticFiring) and (f.kind, f.f_max, f.beta) == ("exponential", 0.3, 2.0)
    with pytest.raises(ValueError, match="firing kind"):
        surrogate.firing("poisson")


def test_default_phi_is_one_over_k_out_so_the_soma_is_stable():
    """phi=None gives phi_k = 1/K_out: Phi = 1, alpha' = 1 - (1 + Phi)/tau stays in (-1, 1) for any wiring."""
    from dendsn import dendritic, wiring

    for w in (wiring.Segregated(4), wiring.KTo1(k=2, n_output=3), wiring.Segregated(1)):
        cell = dendritic.DendLIF(w, tau=2.0)
        assert torch.allclose(cell.phi * w.n_output if cell.phi.dim() == 0 else cell.phi.sum(), torch.tensor(1.0))
        # a constant drive settles instead of oscillating: the soma potential converges
        cell.v_threshold = 1e9  # no spikes: watch the subthreshold dynamics only
        cell.step_mode = "s"
        seq = []
        for _ in range(30):
            cell(torch.full((1, w.n_input), 0.4))
            seq.append(cell.v.item())
        assert abs(seq[-1] - seq[-2]) < 1e-4 and all(x >= 0 for x in seq)
