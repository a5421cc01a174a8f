"""The nonlinear point models (QIF, EIF, KLIF, LIAF, PSN): hand-computed steps, SpikingJelly parity,
fused kernels against the generic `StepNeuron` loop, refractory periods and one-line errors."""

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based import surrogate as sj_surrogate

from dendsn import nonlinear, surrogate

CONF = Path(__file__).resolve().parents[1] / "conf" / "neuron"


def col(*values):
    return torch.tensor(values).view(-1, 1, 1)  # [T, B=1, 1]


def generic(model):
    """The same model forced onto the generic step loop (its fused kernel switched off)."""
    model.fused_scan = lambda *a: None
    return model


# --- by hand ------------------------------------------------------------------------------------------


def test_qif_by_hand():
    """v0 = v_reset = -0.1; h = v + (x + v (v - 0.8)) / 2."""
    q = nonlinear.QIF()
    s = q(col(1.0, 1.5, 0.5))
    # h1 = -0.1 + (1 + 0.09)/2 = 0.445; h2 = 0.445 + (1.5 + 0.445 * -0.355)/2 = 1.1160125 -> spike, v = -0.1
    # h3 = -0.1 + (0.5 + 0.09)/2 = 0.195
    assert s.flatten().tolist() == [0.0, 1.0, 0.0]
    assert q.v.item() == pytest.approx(0.195)


def test_eif_by_hand():
    e = nonlinear.EIF()
    s = e(col(1.0, 2.0))
    h1 = -0.1 + (1.0 + 0.1 + math.exp(-0.9)) / 2  # 0.6533: below threshold
    h2 = h1 + (2.0 - h1 + math.exp(h1 - 0.8)) / 2  # 1.75: spike, reset to -0.1
    assert h1 < 1 <= h2
    assert s.flatten().tolist() == [0.0, 1.0] and e.v.item() == pytest.approx(-0.1)
    e.reset()
    e(col(1.0))
    assert e.v.item() == pytest.approx(h1)


def test_klif_by_hand():
    """k = 2: F = relu(2 m), m the LIF charge; hard reset of F, or soft reset of F / k."""
    k = nonlinear.KLIF(k=2.0)
    # m1 = 0.3 -> F = 0.6 (v = 0.6); m2 = 0.6 + (0.2 - 0.6)/2 = 0.4 -> F = 0.8; m3 = 0.8 + 0.1 = 0.9 -> F = 1.8: spike
    assert k(col(0.6, 0.2, 1.0)).flatten().tolist() == [0.0, 0.0, 1.0]
    assert k.v.item() == 0.0
    k = nonlinear.KLIF(k=2.0, scale_reset=True, v_reset=None)
    # m1 = 0.3, F = 0.6, v = 0.3; m2 = 0.25, F = 0.5, v = 0.25; m3 = 1.125, F = 2.25: spike, v = (2.25 - 1)/2
    assert k(col(0.6, 0.2, 2.0)).flatten().tolist() == [0.0, 0.0, 1.0]
    assert k.v.item() == pytest.approx(0.625)
    k(col(-3.0))  # m = -1.1875: F = relu(2 m) = 0
    assert k.v.item() == 0.0


def test_liaf_by_hand():
    """The output is analog: act(h - v_threshold) (threshold related) or act(h); spikes only reset."""
    x = col(1.0, 3.0, 0.0)
    # h1 = 0.5; h2 = 0.5 + (3 - 0.5)/2 = 1.75 -> reset to 0; h3 = 0
    y = nonlinear.LIAF(act="relu", threshold_related=True)(x)
    assert y.flatten().tolist() == pytest.approx([0.0, 0.75, 0.0])
    y = nonlinear.LIAF(act="identity", threshold_related=False)(x)
    assert y.flatten().tolist() == pytest.approx([0.5, 1.75, 0.0])


def test_psn_by_hand():
    p = nonlinear.PSN(T=2)
    with torch.no_grad():
        p.weight.copy_(torch.tensor([[1.0, 0.0], [0.5, 1.0]]))
        p.bias.fill_(-1.0)
    # h = W x + bias = [0.6 - 1, 0.3 + 0.7 - 1] = [-0.4, 0.0]: H(0) = 1
    assert p(col(0.6, 0.7)).flatten().tolist() == [0.0, 1.0]


# --- SpikingJelly parity -----------------------------------------------------------------------------


def sj_sigmoid():
    return sj_surrogate.Sigmoid(alpha=4.0)


def pair(name, hard, detach):
    """(ours, SpikingJelly's node, SpikingJelly runs step by step) with the same parameters."""
    kw = dict(detach_reset=detach)
    if name in ("qif", "eif"):
        vr = -0.1 if hard else None
        ours = (nonlinear.QIF if name == "qif" else nonlinear.EIF)(v_reset=vr, **kw)
        theirs = (sj_neuron.QIFNode if name == "qif" else sj_neuron.EIFNode)(
            v_reset=vr, surrogate_function=sj_sigmoid(), step_mode="m", **kw
        )
        return ours, theirs, False
    vr = 0.0 if hard else None
    if name == "klif":
        ours = nonlinear.KLIF(v_reset=vr, scale_reset=not hard, **kw)
        theirs = sj_neuron.KLIFNode(
            v_reset=vr, scale_reset=not hard, surrogate_function=sj_sigmoid(), step_mode="m", **kw
        )
        with torch.no_grad():  # a k away from 1, on both
            ours.k.fill_(1.5)
            theirs.k.fill_(1.5)
        return ours, theirs, False
    # SpikingJelly's LIAFNode in step_mode 'm' runs LIFNode's multi-step kernel and returns spikes, not
    # the analog output, so its single-step mode is the reference
    ours = nonlinear.LIAF(v_reset=vr, act="tanh", threshold_related=True, **kw)
    theirs = sj_neuron.LIAFNode(
        act=torch.tanh,
        threshold_related=True,
        tau=2.0,
        v_reset=vr,
        surrogate_function=sj_sigmoid(),
        step_mode="s",
        **kw,
    )
    return ours, theirs, True


@pytest.mark.parametrize("name", ["qif", "eif", "klif", "liaf"])
@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize("detach", [False, True])
def test_matches_spikingjelly(name, hard, detach):
    torch.manual_seed(0)
    x = (torch.randn(8, 4, 16) + 0.3).requires_grad_()  # (1.5 x: soft-reset EIF runs off to inf)
    w = torch.randn(16)
    ours, theirs, stepwise = pair(name, hard, detach)
    s1 = ours(x)
    s2 = torch.stack([theirs(xt) for xt in x]) if stepwise else theirs(x)
    if ours.analog:
        torch.testing.assert_close(s1, s2, rtol=1e-5, atol=1e-6)
    else:
        assert torch.equal(s1, s2) and 0 < s1.mean() < 1
    torch.testing.assert_close(ours.v, theirs.v, rtol=1e-5, atol=1e-6)
    p1, p2 = [x], [x]
    if name == "klif":
        p1, p2 = [x, ours.k], [x, theirs.k]
    for a, b in zip(torch.autograd.grad((s1 * w).sum(), p1), torch.autograd.grad((s2 * w).sum(), p2)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_psn_matches_spikingjelly():
    torch.manual_seed(1)
    T = 6
    x = (torch.randn(T, 4, 16) * 1.5).requires_grad_()
    w = torch.randn(16)
    ours = nonlinear.PSN(T)
    theirs = sj_neuron.PSN(T, surrogate_function=sj_sigmoid())
    theirs.load_state_dict(ours.state_dict())  # same parameter names and shapes
    s1, s2 = ours(x), theirs(x)
    assert torch.equal(s1, s2) and 0 < s1.mean() < 1
    g1 = torch.autograd.grad((s1 * w).sum(), [x, ours.weight, ours.bias])
    g2 = torch.autograd.grad((s2 * w).sum(), [x, theirs.weight, theirs.bias])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    ours.surrogate = surrogate.ATan()  # the generic surrogate path
    theirs.surrogate_function = sj_surrogate.ATan(alpha=2.0)
    g1 = torch.autograd.grad((ours(x) * w).sum(), x)[0]
    g2 = torch.autograd.grad((theirs(x) * w).sum(), x)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)


# --- fused kernels = the generic step loop ----------------------------------------------------------------

CASES = {
    "qif-hard": lambda: nonlinear.QIF(),
    "qif-soft": lambda: nonlinear.QIF(v_reset=None, a0=0.7, v_rest=0.2),
    "eif-hard": lambda: nonlinear.EIF(delta_T=0.7, v_rest=0.1),
    "eif-soft-detach": lambda: nonlinear.EIF(v_reset=None, detach_reset=True),
    "klif-hard": lambda: nonlinear.KLIF(k=1.3, v_reset=0.2),
    "klif-scale-soft": lambda: nonlinear.KLIF(k=1.3, scale_reset=True, v_reset=None),
    "klif-scale-hard-nodecay": lambda: nonlinear.KLIF(k=0.8, scale_reset=True, decay_input=False),
    "liaf-sigmoid": lambda: nonlinear.LIAF(act="sigmoid", v_reset=0.1),
    "liaf-relu-soft": lambda: nonlinear.LIAF(v_reset=None),
    "liaf-identity-detach": lambda: nonlinear.LIAF(act="identity", threshold_related=False, detach_reset=True),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("feedback", [0.0, 0.3])
def test_fused_equals_generic_loop(case, feedback):
    torch.manual_seed(2)
    x = (torch.randn(7, 3, 10) * 1.5 + 0.3).requires_grad_()
    v0 = (torch.rand(3, 10) * 0.8).requires_grad_()  # a carried-over state
    w, wv = torch.randn(10), torch.randn(10)
    out = []
    for model in (CASES[case](), generic(CASES[case]())):
        model.state = (v0,)
        y = model.run(x, feedback)
        params = [x, v0] + list(model.parameters())
        out.append((y, model.v, torch.autograd.grad((y * w).sum() + (model.v * wv).sum(), params)))
    (y1, v1, g1), (y2, v2, g2) = out
    if CASES[case]().analog:
        torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-6)
    else:
        assert torch.equal(y1, y2) and 0 < y1.mean() < 1
    torch.testing.assert_close(v1, v2, rtol=1e-5, atol=1e-6)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_single_step_equals_multi_step():
    torch.manual_seed(3)
    x = torch.randn(5, 2, 6) * 1.5
    for make in CASES.values():
        multi, single = make(), make()
        single.step_mode = "s"
        single.load_state_dict(multi.state_dict())
        torch.testing.assert_close(multi(x), torch.stack([single(xt) for xt in x]), rtol=1e-5, atol=1e-6)


# --- refractory period --------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [nonlinear.QIF, nonlinear.EIF, nonlinear.KLIF, nonlinear.LIAF])
def test_refractory_holds_at_reset(make):
    """R = 2: after a spike, two steps with the input ignored, v held at v_reset and no spike."""
    m = make(refractory=2)
    m.store_seq = True
    m(torch.full((8, 1, 1), 5.0))
    fired = (m.h_seq.flatten() >= 1.0).tolist()  # h >= threshold where it spiked
    assert fired == [True, False, False, True, False, False, True, False]
    vr = m.v_reset
    assert m.v_seq.flatten().tolist() == pytest.approx([vr] * 8)  # reset, then held
    if not m.analog:
        no_ref = make()
        assert no_ref(torch.full((8, 1, 1), 5.0)).sum() == 8  # without it, a spike every step


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,kw,match",
    [
        (nonlinear.QIF, {"tau": 1.0}, r"tau must be > 1.0 \(got tau=1.0\)"),
        (nonlinear.EIF, {"delta_T": 0.0}, r"delta_T must be > 0.0 \(got delta_T=0.0\)"),
        (nonlinear.QIF, {"a0": -1.0}, r"a0 must be > 0.0 \(got a0=-1.0\)"),
        (nonlinear.QIF, {"v_rest": -0.5}, r"v_rest must be >= -0.1"),
        (nonlinear.KLIF, {"tau": 0.5}, r"tau must be > 1.0"),
        (nonlinear.KLIF, {"k": 0.0}, r"k must be > 0.0"),
        (nonlinear.EIF, {"refractory": -1}, r"refractory must be a whole number of steps >= 0 \(got refractory=-1\)"),
        (nonlinear.LIAF, {"act": "gelu"}, r"act must be one of relu, sigmoid, tanh, identity \(got act='gelu'\)"),
        (nonlinear.LIAF, {"threshold_related": "yes"}, r"threshold_related must be true or false"),
        (
            nonlinear.PSN,
            {"T": 4, "refractory": 2},
            r"PSN has no reset, so a refractory period does not apply \(got refractory=2\)",
        ),
        (nonlinear.PSN, {"T": 0}, r"T must be a whole number of steps >= 1 \(got T=0\)"),
    ],
)
def test_bad_parameters_name_themselves(make, kw, match):
    with pytest.raises(ValueError, match=match) as e:
        make(**kw)
    assert "\n" not in str(e.value)


def test_psn_refuses_another_T():
    with pytest.raises(ValueError, match=r"PSN was built for T=4 steps \(got an input of 3 steps\)"):
        nonlinear.PSN(4)(torch.zeros(3, 2, 5))


# --- configs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["qif", "eif", "klif", "liaf", "psn"])
def test_config_builds_the_model(name):
    from hydra.utils import instantiate

    cfg = OmegaConf.merge({"T": 5}, {"neuron": OmegaConf.load(CONF / f"{name}.yaml")})
    model = instantiate(cfg.neuron)()
    assert type(model).__name__ == name.upper()
    assert model(torch.randn(5, 2, 3)).shape == (5, 2, 3)
    if name == "psn":
        assert model.weight.shape == (5, 5)  # T: ${T} follows the root T
    else:
        assert model.refractory == 0
