"""The `readout` group: every read-out's score, prediction and loss computed by hand on small tensors,
the non-spiking LI read-out layer against its recursion, and the read-outs through the real CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import TINY, one_error

from dendsn.neurons import LI
from dendsn_cli import readouts as R

# out [T=3, B=2, C=3]: sample 0: class 1 fires at t=0 and t=2, class 2 at t=1 and t=2, class 0 never;
# sample 1: class 0 fires at t=2 only, class 2 at t=1, class 1 never.
OUT = torch.tensor(
    [
        [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]],
        [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]],
        [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]],
    ]
)
Y = torch.tensor([1, 0])


def near(t, want):
    assert torch.allclose(t.double(), torch.tensor(want, dtype=torch.float64), atol=1e-6), (t, want)


def ce(logits, y):
    """Cross-entropy by hand: mean_b (log sum_c exp(l[b, c]) - l[b, y_b])."""
    return sum(math.log(sum(math.exp(v) for v in row)) - row[k] for row, k in zip(logits, y.tolist())) / len(logits)


def test_counts_rate_and_time_weighted_by_hand():
    counts = [[0, 2, 2], [1, 0, 1]]
    assert R.Counts().scores(OUT).tolist() == counts
    assert R.Counts().predict(OUT).tolist() == [1, 0]  # ties: the lower class
    assert R.Counts().loss(OUT, Y).item() == pytest.approx(ce(counts, Y))
    rate = R.Rate(gain=10.0)
    near(rate.scores(OUT), [[0, 2 / 3, 2 / 3], [1 / 3, 0, 1 / 3]])
    assert rate.loss(OUT, Y).item() == pytest.approx(ce([[0, 20 / 3, 20 / 3], [10 / 3, 0, 10 / 3]], Y))
    tw = R.TimeWeighted(decay=0.5, gain=2.0)  # w_t = exp(-t / 1.5)
    w = [math.exp(-t / 1.5) for t in range(3)]
    by_hand = [[0, w[0] + w[2], w[1] + w[2]], [w[2], 0, w[1]]]
    near(tw.scores(OUT), by_hand)
    assert tw.predict(OUT).tolist() == [1, 2]  # early spikes weigh more
    assert tw.loss(OUT, Y).item() == pytest.approx(ce([[2 * v for v in row] for row in by_hand], Y))


def test_first_spike_times_prediction_and_temporal_loss_by_hand():
    fs = R.FirstSpike()
    # first spikes: sample 0: class 0 never (T=3), class 1 at 0, class 2 at 1; sample 1: 2, never (3), 1
    assert fs.times(OUT).tolist() == [[3, 0, 1], [2, 3, 1]]
    assert fs.predict(OUT).tolist() == [1, 2]
    assert fs.loss(OUT, Y).item() == pytest.approx(ce([[-3, 0, -1], [-2, -3, -1]], Y))
    assert R.FirstSpike(silent_time=10.0).times(OUT)[0, 0].item() == 10.0
    hot = R.FirstSpike(temperature=0.5)
    assert hot.loss(OUT, Y).item() == pytest.approx(ce([[-6, 0, -2], [-4, -6, -2]], Y))
    # equal first-spike times: the class with more spikes wins; a fractional silent time keeps the order exact
    tie = torch.tensor([[[1.0, 1.0]], [[0.0, 1.0]]])
    assert fs.predict(tie).tolist() == [1]
    late = torch.tensor([[[0.0, 0.0]], [[0.0, 1.0]], [[0.0, 1.0]]])  # class 1 fires at t=1 (twice), 0 never
    assert R.FirstSpike(silent_time=0.5).predict(late).tolist() == [0]  # silent (0.5) ranks ahead of t=1


def test_first_spike_gradient_pulls_a_silent_correct_class_to_fire():
    """d t_first / d s[t] = t - T for a neuron silent before t: the temporal CE pushes the correct, silent
    class to fire (its spikes' gradient is negative: raising s lowers the loss) and a wrong early one later."""
    out = OUT.clone().requires_grad_(True)
    R.FirstSpike().loss(out, torch.tensor([0, 1])).backward()  # both correct classes never fire
    g = out.grad
    assert (g[:, 0, 0] < 0).all() and (g[:, 1, 1] < 0).all()
    assert g[0, 0, 1] > 0  # the wrong, first class of sample 0
    t_first = R.first_spike_times(out, 3.0)
    (grad,) = torch.autograd.grad(t_first[0, 0], out)
    assert grad[:, 0, 0].tolist() == [-3.0, -2.0, -1.0]  # t - T at each step


def test_tet_and_mse_count_by_hand():
    T = 3
    per_step = sum(ce([[T * v for v in row] for row in OUT[t].tolist()], Y) for t in range(T)) / T
    assert R.TET().loss(OUT, Y).item() == pytest.approx(per_step)
    assert R.TET().predict(OUT).tolist() == [1, 0]
    m = R.MSECount(correct_rate=0.8, incorrect_rate=0.2)
    target = [[0.6, 2.4, 0.6], [2.4, 0.6, 0.6]]  # T * rate
    counts = [[0, 2, 2], [1, 0, 1]]
    sq = sum((c - t) ** 2 for rc, rt in zip(counts, target) for c, t in zip(rc, rt)) / 6
    assert m.loss(OUT, Y).item() == pytest.approx(sq / T)


def test_membrane_reductions_and_time_softmax_by_hand():
    v = torch.tensor([[[0.1, 0.5]], [[0.9, -0.2]], [[0.3, 0.4]]])  # [T=3, B=1, C=2]
    y = torch.tensor([0])
    for reduce, want in (("final", [0.3, 0.4]), ("sum", [1.3, 0.7]), ("mean", [1.3 / 3, 0.7 / 3]), ("max", [0.9, 0.5])):
        r = R.Membrane(reduce=reduce)
        assert r.scores(v)[0].tolist() == pytest.approx(want), reduce
        assert r.loss(v, y).item() == pytest.approx(ce([want], y))
        assert r.name == f"membrane_{reduce}" and not r.spiking
    ts = R.TimeSoftmax()
    p0 = sum(math.exp(a) / (math.exp(a) + math.exp(b)) for a, b in v[:, 0].tolist()) / 3
    assert ts.scores(v)[0].tolist() == pytest.approx([p0, 1 - p0])
    assert ts.loss(v, y).item() == pytest.approx(-math.log(p0))


def test_li_readout_layer_follows_its_recursion_and_carries_state():
    torch.manual_seed(0)
    x = torch.randn(7, 2, 3)
    li = LI(tau=2.5)
    out = li(x)
    v, want = torch.zeros(2, 3), []
    for t in range(7):
        v = v + (x[t] - v) / 2.5
        want.append(v)
    assert torch.allclose(out, torch.stack(want), atol=1e-6)
    more = li(x[:2])  # continues from v[6]
    v1 = v + (x[0] - v) / 2.5
    assert torch.allclose(more[0], v1, atol=1e-6) and torch.allclose(more[1], v1 + (x[1] - v1) / 2.5, atol=1e-6)
    li.reset()
    assert torch.allclose(li(x), out)
    assert torch.equal(LI(tau=1.0)(x), x)  # tau = 1: no memory
    with pytest.raises(ValueError, match="tau must be a number >= 1"):
        LI(tau=0.5)


@pytest.mark.parametrize(
    "readout, key", [("membrane_max", "readout.tau=0.5"), ("mse_count", "readout.correct_rate=0.1")]
)
def test_bad_readout_parameters_are_one_line(dendsn_here, readout, key):
    p = dendsn_here("train", f"readout={readout}", key, *TINY)
    one_error(p, "readout:", key.split("=")[0].split(".")[1])


def test_readout_combinations_that_cannot_work_are_refused(dendsn_here):
    one_error(
        dendsn_here("train", "readout=first_spike", "learning.per_step_loss=true", *TINY),
        "learning.per_step_loss=true",
        "readout=first_spike",
        "readout=tet",
    )
    one_error(
        dendsn_here("train", "readout=membrane_final", "learning=stdp", *TINY),
        "readout=membrane_final",
        "learning.readout=delta",
        "learning.readout=gradient",
    )
    one_error(
        dendsn_here("train", "readout=first_spike", "learning=readout", *TINY),
        "learning.readout=delta",
        "readout=first_spike predicts from spike times",
        "learning.readout=gradient",
    )
    one_error(
        dendsn_here("train", "readout=time_softmax", "learning=dpp", "learning.readout=gradient", "neuron=lif", *TINY),
        "learning=dpp",
        "readout=time_softmax",
        "use a spiking read-out",
    )


def test_tet_with_per_step_loss_is_the_same_loss_and_pretraining_minimises_the_readout_loss():
    from omegaconf import OmegaConf

    from dendsn.networks import MLP
    from dendsn.neurons import LIF
    from dendsn_cli.learning import STDP
    from dendsn_cli.train import build_readout

    cfg = OmegaConf.create({"readout": {"_target_": "dendsn_cli.readouts.TET"}, "learning": {"per_step_loss": True}})
    assert isinstance(build_readout(cfg), R.TET)
    rule = STDP(readout="gradient", pretrain_bptt_epochs=1)
    rule.decoder = R.Membrane("final")
    net = MLP([6], 3, neuron=LIF, readout=rule.decoder.neuron(LIF), hidden=[5])
    rule.setup(net, lambda params: torch.optim.Adam(params, lr=1e-3), total_steps=4)
    assert rule._bptt.decoder is rule.decoder
    torch.manual_seed(0)
    x, y = torch.rand(4, 2, 6), torch.tensor([0, 2])
    net.reset()
    loss, out = rule.train_batch(net, x, y)  # a BPTT pre-training step
    assert loss.item() == pytest.approx(rule.decoder.loss(out, y).item())


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


def test_membrane_readout_trains_through_the_cli_with_an_li_output_layer(dendsn_here, tmp_path):
    """A non-spiking read-out end to end: the output layer is an LI (no spikes, no rate logged for it, not
    calibrated to a rate), the loss falls, and `dendsn eval` scores the checkpoint with the same read-out."""
    run = tmp_path / "run"
    p = dendsn_here("train", "readout=membrane_mean", "neuron=lif", *TINY, "epochs=3", f"hydra.run.dir={run}")
    assert p.returncode == 0, p.stderr
    m = _metrics(run)
    h = m["history"]
    assert m["status"] == "completed" and h[-1]["train_loss"] < h[0]["train_loss"], h
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert set(ck["model"]) == {"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"}  # LI: none
    init = [ln for ln in p.stderr.splitlines() if "init_rate=" in ln]
    assert init and "layer1" in init[0] and "readout" not in init[0]  # no firing rate to calibrate
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(run)).Reload().Tags()["scalars"]
    assert "rate/layer1" in tags and "rate/readout" not in tags
    e = dendsn_here("eval", f"ckpt={run}")
    assert e.returncode == 0, e.stderr
    assert f"{h[-1]['test_acc']:.2%}" in e.stdout + e.stderr


def test_first_spike_readout_learns_through_the_cli(dendsn_here, tmp_path):
    run = tmp_path / "run"
    p = dendsn_here("train", "readout=first_spike", "neuron=lif", *TINY, "epochs=3", f"hydra.run.dir={run}")
    assert p.returncode == 0, p.stderr
    h = _metrics(run)["history"]
    assert h[-1]["train_loss"] < h[0]["train_loss"] and h[-1]["train_acc"] > 0.15, h
