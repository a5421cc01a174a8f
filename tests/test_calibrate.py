"""`init_rate`: data-driven scaling of each layer's synapses to a target firing rate (dendsn.calibrate)."""

import json

import pytest
import torch
from conftest import TINY, run_here

from dendsn.calibrate import calibrate_rates, layer_pairs
from dendsn.competition import LateralInhibition
from dendsn.dendritic import DendLIF
from dendsn.networks import MLP
from dendsn.neurons import LIF
from dendsn.wiring import Segregated


def _spikes(T=10, B=32, N=40, p=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, N, generator=g) < p).float()


def _rates(model, x):
    model.reset()
    rates = []
    hooks = [n.register_forward_hook(lambda m, i, o: rates.append(float(o.mean()))) for _, n, _ in layer_pairs(model)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return rates


@pytest.mark.parametrize("neuron", [lambda: LIF(tau=2.0), lambda: DendLIF(wiring=Segregated(3), tau=2.0)])
def test_every_layer_ends_near_the_target_rate_and_only_weights_are_scaled(neuron):
    torch.manual_seed(0)
    model = MLP([40], 5, neuron, lambda: LIF(tau=2.0), hidden=[30, 20])
    x = _spikes()
    assert max(_rates(model, x)) == 0.0  # the plain init is silent on sparse spikes
    before = {k: v.clone() for k, v in model.state_dict().items()}
    results = calibrate_rates(model, x, 0.1, tol=0.25)
    assert [r.index for r in results] == [0, 1, 2]
    for r, rate in zip(results, _rates(model, x)):
        assert 0.1 / 1.25 <= rate <= 0.1 * 1.25 and rate == pytest.approx(r.rate_after)
    synapses = [s for s, _, _ in layer_pairs(model)]
    for s, r in zip(synapses, results):
        assert torch.allclose(s.weight, before[_key(model, s, "weight")] * r.scale)
        assert torch.allclose(s.bias, before[_key(model, s, "bias")] * r.scale)


def _key(model, module, name):
    return next(k for k, m in model.named_modules() if m is module) + "." + name


def test_skip_keeps_a_layer_and_the_random_stream_is_untouched():
    torch.manual_seed(0)
    model = MLP([40], 5, lambda: LIF(tau=2.0), lambda: LIF(tau=2.0), hidden=[30])
    w0 = layer_pairs(model)[0][0].weight.clone()
    state = torch.get_rng_state()
    results = calibrate_rates(model, _spikes(), 0.2, skip=[0])
    assert [r.index for r in results] == [1]
    assert torch.equal(layer_pairs(model)[0][0].weight, w0)
    assert torch.equal(torch.get_rng_state(), state)


def test_a_scale_free_layer_keeps_its_weights():
    """Divisive inhibition makes a layer's rate independent of its weight scale: c = 1 is kept."""
    torch.manual_seed(0)
    comp = lambda n_neurons, k_in: LateralInhibition(divisive=True, gain=0.5, k_in=k_in)
    model = MLP([40], 5, lambda: LIF(tau=2.0), lambda: LIF(tau=2.0), hidden=[30], competition=comp)
    w0 = layer_pairs(model)[0][0].weight.clone()
    r = calibrate_rates(model, _spikes(p=0.2), 0.5, tol=0.01)[0]
    assert r.scale == 1.0 and torch.equal(layer_pairs(model)[0][0].weight, w0)


def test_bad_target_is_a_value_error():
    model = MLP([40], 5, lambda: LIF(tau=2.0), lambda: LIF(tau=2.0), hidden=[30])
    with pytest.raises(ValueError, match="target firing rate"):
        calibrate_rates(model, _spikes(), 0.0)


def test_init_rate_on_the_command_line_wakes_up_a_silent_network(tmp_path):
    p = run_here("train", *TINY, "epochs=1", "init_rate=0.05", "hydra.run.dir=run", cwd=tmp_path, check=True)
    line = next(ln for ln in p.stderr.splitlines() if ln.startswith("dendsn: init_rate=0.05"))
    assert "layer1 0.000->" in line and "readout 0.000->" in line
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "completed"
