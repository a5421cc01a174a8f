"""Adaptive and conductance point neurons (models/adaptive.py): hand-computed steps, SpikingJelly
parity, the fused two-state kernel against the generic step loop, firing signatures, errors."""

import math
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf
from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based import surrogate as sj_surrogate

from dendsn import adaptive

SJ_KW = dict(tau=2.0, v_c=0.8, a0=1.0, v_threshold=1.0, v_rest=0.0, tau_w=2.0, a=0.1, b=0.2)


def _loop(cell, x_seq, state, feedback=0.0):
    """The generic path: StepNeuron.step T times under autograd."""
    out = []
    for x in x_seq.unbind(0):
        s, _, state = cell.step(x, state, feedback)
        out.append(s)
    return torch.stack(out), state


def _isis(s):
    t = s.flatten().nonzero().flatten().tolist()
    return [b - a for a, b in zip(t, t[1:])]


# --- AdEx / Izhikevich ------------------------------------------------------------------------------


def test_adex_two_steps_by_hand():
    n = adaptive.AdEx(tau=2.0, delta_T=0.1, theta_rh=0.8, tau_w=10.0, a=0.1, b=0.1)
    s = n(torch.tensor([0.9, 2.0]).view(2, 1, 1))
    e = lambda v: 0.1 * math.exp((v - 0.8) / 0.1)
    h1 = 0 + (0.9 - 0 + e(0) - 0) / 2  # 0.45..., no spike
    w1 = 0 + (0.1 * h1 - 0) / 10
    h2 = h1 + (2.0 - h1 + e(h1) - w1) / 2  # > 1: spike, v -> -0.1, w += 0.1
    w2 = w1 + (0.1 * h2 - w1) / 10 + 0.1
    assert s.flatten().tolist() == [0.0, 1.0] and h2 > 1
    assert n.v.item() == pytest.approx(-0.1) and n.state[1].item() == pytest.approx(w2, rel=1e-5)


@pytest.mark.parametrize("v_reset", [-0.1, None])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_izhikevich_matches_spikingjelly(v_reset, detach_reset):
    torch.manual_seed(0)
    x = (torch.randn(12, 4, 32) * 0.8 + 0.6).requires_grad_()
    w = torch.randn(32)
    ours = adaptive.Izhikevich(**SJ_KW, v_reset=v_reset, detach_reset=detach_reset)
    theirs = sj_neuron.IzhikevichNode(
        **SJ_KW,
        v_reset=v_reset,
        detach_reset=detach_reset,
        step_mode="m",
        surrogate_function=sj_surrogate.Sigmoid(alpha=4.0),
    )
    v0 = torch.full((4, 32), 0.0 if v_reset is None else v_reset)  # SJ starts at v_reset, ours at rest
    ours.state = (v0, torch.zeros(4, 32))
    s1, s2 = ours(x), theirs(x)
    assert s1.mean() > 0.05
    assert torch.equal(s1, s2)
    torch.testing.assert_close(ours.v, theirs.v, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.state[1], theirs.w, rtol=1e-5, atol=1e-6)
    (g1,) = torch.autograd.grad((s1 * w).sum(), x)
    (g2,) = torch.autograd.grad((s2 * w).sum(), x)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "cls,kw",
    [
        (adaptive.Izhikevich, {}),
        (adaptive.Izhikevich, {"v_reset": None, "input_scale": 1.5}),
        (adaptive.AdEx, {}),
        (adaptive.AdEx, {"v_reset": None, "v_rest": 0.1}),
    ],
)
def test_fused_kernel_equals_generic_loop_with_feedback(cls, kw):
    torch.manual_seed(1)
    x = (torch.randn(10, 3, 16) * 0.8 + 0.9).requires_grad_()
    v0 = (torch.rand(3, 16) * 0.5).requires_grad_()
    w0 = (torch.rand(3, 16) * 0.2).requires_grad_()
    cell = cls(**kw)
    fused = cell.fused_scan(x, (v0, w0), 0.5)
    assert fused is not None and type(fused[0].grad_fn).__name__ == "_AdaptScanBackward"
    ref = _loop(cell, x, (v0, w0), 0.5)
    w = torch.randn(16)
    assert torch.equal(fused[0], ref[0]) and fused[0].mean() > 0.05
    torch.testing.assert_close(fused[1][0], ref[1][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused[1][1], ref[1][1], rtol=1e-5, atol=1e-6)
    loss = lambda out: (out[0] * w).sum() + (out[1][0] * w).sum() + out[1][1].pow(2).sum()
    g1 = torch.autograd.grad(loss(fused), (x, v0, w0))
    g2 = torch.autograd.grad(loss(ref), (x, v0, w0))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fused_kernel_gradcheck_float64():
    """With detach_reset and b = 0 the potentials are piecewise smooth: true gradients, by finite differences."""
    torch.manual_seed(2)
    for cls in (adaptive.Izhikevich, adaptive.AdEx):
        cell = cls(b=0.0, detach_reset=True)
        x = (torch.randn(5, 2, 3, dtype=torch.float64) * 0.5 + 0.5).requires_grad_()
        v0 = (torch.rand(2, 3, dtype=torch.float64) * 0.3).requires_grad_()
        w0 = torch.rand(2, 3, dtype=torch.float64, requires_grad=True)
        f = lambda x, v0, w0: cell.fused_scan(x, (v0, w0), 0.3)[1]
        assert torch.autograd.gradcheck(f, (x, v0, w0), eps=1e-6, atol=1e-6)


def test_izhikevich_preset_is_the_2003_model():
    """float64, x = 1 (I = 10): the same spike times as Izhikevich's equations in mV (two 0.5 ms Euler sub-steps
    per ms, the spike at the sub-step where V reaches 30 mV, then V = c, u += d)."""
    for name in ("regular_spiking", "chattering"):
        a, b, c, d = adaptive.IZHIKEVICH_PRESETS[name]
        s = adaptive.Izhikevich(preset=name)(torch.ones(200, 1, 1, dtype=torch.float64)).flatten()
        V, u, ref = -70.0, b * -70.0, []
        for t in range(200):
            for m in range(2):
                if m and V >= 30:
                    break
                V = V + 0.5 * (0.04 * V * V + 5 * V + 140 - u + 10.0)
                u = u + 0.5 * a * (b * V - u)
            if V >= 30:
                ref.append(t)
                V, u = c, u + d
        assert s.nonzero().flatten().tolist() == ref and len(ref) >= 4


def test_izhikevich_presets_fire_with_their_signatures():
    x = torch.ones(400, 1, 1)
    isi = {name: _isis(adaptive.Izhikevich(preset=name)(x)) for name in adaptive.IZHIKEVICH_PRESETS}
    rs, fs, ib, ch = (isi[k] for k in ("regular_spiking", "fast_spiking", "intrinsically_bursting", "chattering"))
    assert rs[-1] > 1.5 * rs[0] and all(i > 20 for i in rs)  # adapts: the intervals grow
    assert len(fs) > 2 * len(rs) and max(fs[3:]) <= 1.5 * min(fs[3:])  # fast, no adaptation
    assert max(ib[:2]) <= 8 and min(ib[2:]) > 25  # a burst, then single spikes
    long = [i for i in ch if i > 25]  # chattering: repeated bursts
    assert len(long) >= 4 and sum(i <= 8 for i in ch) >= 2 * len(long)
    assert adaptive.Izhikevich(preset="bursting").b == adaptive.Izhikevich(preset="intrinsically_bursting").b


def test_izhikevich_preset_values_can_be_overridden():
    n = adaptive.Izhikevich(preset="regular_spiking", b=0.0, v_reset=None)
    assert n.b == 0.0 and n.v_reset is None and n.a == pytest.approx(0.2) and n.substeps == 2


# --- adaptive thresholds --------------------------------------------------------------------------


def test_alif_threshold_rises_after_spikes_and_recovers():
    n = adaptive.ALIF(tau=2.0, tau_a=10.0, beta=0.5, v_reset=None)
    x = torch.cat([torch.full((20, 1, 1), 3.0), torch.zeros(30, 1, 1)])
    s = n(x[:20])
    a = n.state[1].item()
    assert a > 1 and s[:10].sum() > s[10:].sum()  # the threshold rises: fewer spikes
    n(x[20:])
    assert n.state[1].item() == pytest.approx(a * math.exp(-30 / 10.0), rel=1e-5)


def test_alif_soft_reset_subtracts_the_adapted_threshold_by_hand():
    n = adaptive.ALIF(tau=2.0, tau_a=10.0, beta=0.5, v_reset=None)
    n.state = (torch.tensor([[0.0]]), torch.tensor([[1.0]]))
    s = n(torch.tensor([4.0]).view(1, 1, 1))
    rho = math.exp(-0.1)
    A = 1.0 + 0.5 * rho  # h = 2 >= A
    assert s.item() == 1.0 and n.v.item() == pytest.approx(2.0 - A) and n.state[1].item() == pytest.approx(rho + 1)


def test_theta_lif_is_alif_with_theta_equal_beta_a():
    torch.manual_seed(3)
    x = torch.rand(30, 2, 8) * 3
    th, al = adaptive.ThetaLIF(tau_theta=6.0, theta_plus=0.3), adaptive.ALIF(tau_a=6.0, beta=0.3, v_reset=0.0)
    s = th(x)
    assert torch.equal(s, al(x)) and s.sum() > 0
    torch.testing.assert_close(th.state[1], 0.3 * al.state[1])


def test_theta_lif_state_is_theta():
    th = adaptive.ThetaLIF(tau_theta=5.0, theta_plus=0.2)
    s = th(torch.tensor([3.0, 0.0]).view(2, 1, 1))  # spike at t=0, then decay
    assert s.flatten().tolist() == [1.0, 0.0]
    assert th.state[1].item() == pytest.approx(0.2 * math.exp(-1 / 5.0))


# --- CLIF, GLIF -----------------------------------------------------------------------------------


def test_clif_snntorch_equations_by_hand():
    n = adaptive.CLIF(tau_s=5.0, tau=2.0, decay_input=False, v_reset=None)
    al, be = math.exp(-1 / 5), math.exp(-1 / 2)
    s = n(torch.tensor([0.5, 0.3]).view(2, 1, 1))
    i1, v1 = 0.5, 0.5  # i = alpha i + x; h = beta v + i
    i2 = al * i1 + 0.3
    h2 = be * v1 + i2  # 1.0... >= 1: spike, soft reset
    assert s.flatten().tolist() == [0.0, 1.0]
    assert n.v.item() == pytest.approx(h2 - 1.0, rel=1e-5) and n.state[1].item() == pytest.approx(i2)


def test_clif_decay_input_settles_at_the_input():
    n = adaptive.CLIF(tau_s=3.0, tau=2.0, v_threshold=10.0)
    n(torch.full((80, 1, 1), 0.7))
    assert n.v.item() == pytest.approx(0.7, rel=1e-4)


def test_glif_spike_resets_and_jumps_by_hand():
    n = adaptive.GLIF(
        tau=2.0,
        k1=0.5,
        k2=0.1,
        delta_i1=0.2,
        delta_i2=-0.1,
        f1=0.5,
        b_s=0.2,
        delta_theta_s=0.3,
        a_v=0.1,
        b_v=0.5,
        f_v=0.2,
        delta_v=0.05,
    )
    n.state = (
        torch.tensor([[0.8]]),
        torch.tensor([[0.4]]),
        torch.tensor([[0.0]]),
        torch.tensor([[0.1]]),
        torch.tensor([[0.0]]),
    )
    s = n(torch.tensor([1.6]).view(1, 1, 1))
    h = 0.8 + (1.6 + 0.4 + 0.0 - 0.8) / 2  # 1.4
    th_v = 0.1 * h  # 0.14
    th_s = 0.8 * 0.1  # 0.08: threshold 1.22 < h
    v, i1, i2, ts, tv = (z.item() for z in n.state)
    assert s.item() == 1.0
    assert v == pytest.approx(0.2 * h - 0.05) and i1 == pytest.approx(0.5 * 0.2 + 0.2) and i2 == pytest.approx(-0.1)
    assert ts == pytest.approx(th_s + 0.3) and tv == pytest.approx(th_v)


def test_glif_fires_like_a_lif_on_order_one_input():
    x = torch.tensor([0.5, 1.5, 3.0]).view(1, 1, 3).expand(50, 1, 3)
    counts = adaptive.GLIF()(x).sum(0).flatten().tolist()
    assert counts[0] == 0 and 0 < counts[1] < counts[2] < 50


# --- Hodgkin-Huxley ---------------------------------------------------------------------------------


def test_hh_fires_repetitively_above_rheobase_only():
    x = torch.tensor([0.0, 0.2, 1.0]).view(1, 1, 3).expand(80, 1, 3).contiguous().requires_grad_()
    n = adaptive.HodgkinHuxley()
    s = n(x)
    counts = s.sum(0).flatten().tolist()
    assert counts[0] == 0 and counts[1] == 0 and counts[2] >= 4
    assert (s[1:] * s[:-1]).sum() == 0  # one spike per crossing
    assert abs(n.v[0, 0].item()) < 0.01  # rest stays at rest
    (s[:, 0, 2].sum()).backward()
    assert torch.isfinite(x.grad).all() and x.grad[:, 0, 2].abs().sum() > 0


# --- shared machinery: refractory, feedback, configs, errors ---------------------------------------


@pytest.mark.parametrize("cls", [adaptive.Izhikevich, adaptive.AdEx, adaptive.ALIF, adaptive.CLIF, adaptive.GLIF])
def test_refractory_holds_the_neuron_after_a_spike(cls):
    n = cls(refractory=2)
    s = n(torch.full((12, 1, 1), 4.0)).flatten().tolist()
    t = [i for i, z in enumerate(s) if z]
    assert t and all(b - a >= 3 for a, b in zip(t, t[1:]))


@pytest.mark.parametrize(
    "cls",
    [
        adaptive.ALIF,
        adaptive.ThetaLIF,
        adaptive.CLIF,
        adaptive.GLIF,
        adaptive.HodgkinHuxley,
        adaptive.AdEx,
        adaptive.Izhikevich,
    ],
)
def test_feedback_is_subtracted_from_the_input(cls):
    """run(x, feedback=f) (fused or generic) steps on x[t] - f v[t-1], as a dendritic soma needs."""
    torch.manual_seed(4)
    n = cls()
    x = torch.rand(8, 2, 3) * 2 + 1
    s = n.run(x, feedback=0.3)
    n.reset()
    state, ref = n._state0(x[0]), []
    for x_t in x.unbind(0):
        s_t, _, state = n.step(x_t - 0.3 * state[0], state)
        ref.append(s_t)
    assert torch.equal(s, torch.stack(ref)) and torch.isfinite(state[0]).all()
    assert cls is adaptive.HodgkinHuxley or s.sum() > 0


def test_every_config_builds_a_working_neuron():
    conf = Path(__file__).resolve().parents[1] / "conf" / "neuron"
    names = ["adex", "izhikevich", "izh_rs", "izh_fs", "izh_ib", "izh_ch", "alif", "alif_theta", "clif", "glif", "hh"]
    for name in names:
        cell = hydra.utils.instantiate(OmegaConf.load(conf / f"{name}.yaml"))()
        s = cell(torch.full((4, 2, 3), 1.0))
        assert s.shape == (4, 2, 3) and torch.isfinite(cell.v).all(), name


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: adaptive.AdEx(tau=0.0), "tau must be > 0"),
        (lambda: adaptive.AdEx(theta_rh=-1.0), "theta_rh must be above v_rest"),
        (lambda: adaptive.AdEx(delta_T=float("nan")), "delta_T must be a finite number"),
        (
            lambda: adaptive.Izhikevich(preset="tonic"),
            "preset must be one of regular_spiking, fast_spiking, intrinsically_bursting, chattering, bursting",
        ),
        (lambda: adaptive.Izhikevich(dt=0.5), "dt applies to a preset only"),
        (lambda: adaptive.Izhikevich(preset="chattering", dt=0.0), "dt must be > 0"),
        (lambda: adaptive.Izhikevich(substeps=0), "substeps must be a whole number"),
        (lambda: adaptive.Izhikevich(a0=-1.0), "a0 must be > 0"),
        (lambda: adaptive.Izhikevich(v_reset=2.0), "v_reset must be below v_threshold"),
        (lambda: adaptive.ALIF(tau_a=0.0), "tau_a must be > 0"),
        (lambda: adaptive.ALIF(beta=-0.1), "beta must be >= 0"),
        (lambda: adaptive.ThetaLIF(theta_plus=-1.0), "theta_plus must be >= 0"),
        (lambda: adaptive.CLIF(tau_s=0.0), "tau_s must be > 0"),
        (lambda: adaptive.GLIF(k1=2.0), "k1 must be >= 0.0 and <= 1.0"),
        (lambda: adaptive.GLIF(v_reset=None), "glif resets by f_v and delta_v"),
        (lambda: adaptive.GLIF(f_v=1.0), "f_v must be >= 0.0 and < 1.0"),
        (lambda: adaptive.HodgkinHuxley(substeps=0), "substeps must be a whole number"),
        (lambda: adaptive.HodgkinHuxley(refractory=1), "has no reset"),
        (lambda: adaptive.HodgkinHuxley(input_scale=0.0), "input_scale must be > 0"),
    ],
)
def test_bad_parameters_are_one_line_errors(make, match):
    with pytest.raises(ValueError, match=match) as e:
        make()
    assert "\n" not in str(e.value)
