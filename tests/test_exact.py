"""The event-driven theta network and its exact gradient (`dendsn.events`, learning=exact; spikegd).

The event simulation is checked against an independent clock-driven integration of the same equation in
V; the gradient against central finite differences for every parameter; the loss's continuity along a
sweep of one weight through the point where a spike appears at the trial end; then the runner: the
options, the logs, the one-line refusals.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import one_error
from test_data import write_fake_mnist

from dendsn.events import EventMLP, QIFExp, Theta, simulate
from dendsn_cli.encoders import BinnedLatency
from dendsn_cli.optim import AdaBelief
from dendsn_cli.readouts import EventFirstSpike


def clock_driven(neuron, x0, out_w, in_times, in_w, T, dt=1e-4, v_peak=1e6):
    """Spike times [(t, neuron)] of the neurons' equation integrated by RK4 in (V, I) on a grid of ``dt``, each
    step cut into sub-steps short against |V| (near the blow-up); a spike is V >= v_peak, after which
    V = -v_peak. Theta: tau dV/dt = V (V - 1) + I0 with I constant, and weights move V; QIF-exp:
    tau dV/dt = V (V - 1) + I, (tau / 2) dI/dt = -I, and weights move I. Independent of `simulate`: no phase,
    no H, no closed-form flow. ``x0``: the initial phases (theta) or V (QIF-exp)."""
    tau, theta = neuron.tau, isinstance(neuron, Theta)
    x0 = np.asarray(x0, dtype=np.float64)
    if theta:
        V, I = neuron.r * np.tan(x0 * neuron.r / tau - math.pi / 2) + 0.5, np.full(len(x0), neuron.I0)
    else:
        V, I = x0.copy(), np.zeros(len(x0))
    f = lambda v, i: (v * (v - 1) + i) / tau  # noqa: E731
    g = lambda i: 0 * i if theta else -2 * i / tau  # noqa: E731
    order = np.argsort(in_times)
    in_times, in_w = np.asarray(in_times)[order], np.asarray(in_w)[order]
    nxt, spikes = 0, []
    for s in range(int(round(T / dt))):
        t0 = s * dt
        while nxt < len(in_times) and in_times[nxt] <= t0 + 1e-12:
            if theta:
                V = V + in_w[nxt]
            else:
                I = I + in_w[nxt]
            nxt += 1
        done = 0.0
        while done < dt - 1e-15:
            h = min(dt - done, 0.02 * tau / max(np.abs(V).max(), 1.0))
            k1v, k1i = f(V, I), g(I)
            k2v, k2i = f(V + h / 2 * k1v, I + h / 2 * k1i), g(I + h / 2 * k1i)
            k3v, k3i = f(V + h / 2 * k2v, I + h / 2 * k2i), g(I + h / 2 * k2i)
            k4v, k4i = f(V + h * k3v, I + h * k3i), g(I + h * k3i)
            V = V + h / 6 * (k1v + 2 * k2v + 2 * k3v + k4v)
            I = I + h / 6 * (k1i + 2 * k2i + 2 * k3i + k4i)
            done += h
            fired = np.nonzero(V >= v_peak)[0]
            while fired.size:
                for j in fired:
                    spikes.append((t0 + done, int(j)))
                    if theta:
                        V = V + out_w[j]
                    else:
                        I = I + out_w[j]
                    V[j] = -v_peak
                fired = np.nonzero(V >= v_peak)[0]
    return sorted(spikes)


def small_network(seed, w_net=(-1, 3), w_in=(-0.5, 4.0), x0=(0.0, Theta().period)):
    """A 4-3-2 feed-forward block matrix with 6 input spikes onto the first layer (float64): network and input
    weights uniform in ``w_net`` and ``w_in``, initial states (theta: phases, qif_exp: V) uniform in ``x0``."""
    g = torch.Generator().manual_seed(seed)
    N = 9
    out_w = torch.zeros(N, N, dtype=torch.float64)
    out_w[0:4, 4:7] = torch.empty(4, 3, dtype=torch.float64).uniform_(*w_net, generator=g)
    out_w[4:7, 7:9] = torch.empty(3, 2, dtype=torch.float64).uniform_(*w_net, generator=g)
    in_times = torch.tensor([[0.05, 0.3, 0.31, 0.8, 1.2, 1.5]], dtype=torch.float64)
    in_w = torch.zeros(1, 6, N, dtype=torch.float64)
    in_w[0, :, 0:4] = torch.empty(6, 4, dtype=torch.float64).uniform_(*w_in, generator=g)
    x0_ = torch.rand(1, N, dtype=torch.float64, generator=g) * (x0[1] - x0[0]) + x0[0]
    return x0_, out_w, in_times, in_w


@pytest.mark.parametrize("seed", [4, 6])
def test_event_times_equal_a_clock_driven_integration(seed):
    neuron = Theta()
    phi0, out_w, in_times, in_w = small_network(seed)
    ev = simulate(neuron, phi0, out_w, 2.0, 200, in_times, in_w)
    fired = ev.source[0] >= 0
    events = sorted(zip(ev.times[0][fired].tolist(), ev.source[0][fired].tolist()))
    ref = clock_driven(neuron, phi0[0].numpy(), out_w.numpy(), in_times[0].numpy(), in_w[0].numpy(), 2.0)
    assert len(events) >= 9 and {7, 8} & {j for _, j in events}, events  # every layer fires, a neuron twice
    assert [j for _, j in events] == [j for _, j in ref]
    assert max(abs(a - b) for (a, _), (b, _) in zip(events, ref)) < 1e-3
    assert not bool(ev.exhausted[0])


@pytest.mark.parametrize("seed", [6, 8])
def test_qif_exp_event_times_equal_a_clock_driven_integration(seed):
    v0, out_w, in_times, in_w = small_network(seed, w_net=(-2, 10), w_in=(-3, 12), x0=(-0.3, 0.9))
    neuron = QIFExp()
    ev = simulate(neuron, v0, out_w, 2.0, 200, in_times, in_w)
    fired = ev.source[0] >= 0
    events = sorted(zip(ev.times[0][fired].tolist(), ev.source[0][fired].tolist()))
    ref = clock_driven(neuron, v0[0].numpy(), out_w.numpy(), in_times[0].numpy(), in_w[0].numpy(), 2.0)
    assert len(events) >= 10 and {7, 8} & {j for _, j in events}, events
    assert [j for _, j in events] == [j for _, j in ref]
    assert max(abs(a - b) for (a, _), (b, _) in zip(events, ref)) < 1e-3


@pytest.mark.parametrize("current", [0.0, 1e-11, 1e-9, -1e-9, 1e-6, -1e-6, 1e-3, -1e-3, 0.5, -0.5, 3.0, -3.0, 30.0])
def test_qif_exp_is_accurate_in_float32_through_zero_current(current):
    """The runner trains in float32: the flow and the time to the next spike agree with float64 near I = 0
    (where the tan / tanh branches meet) and near V = 1 (the threshold), with finite gradients everywhere."""
    n = QIFExp()
    V = torch.tensor([1.00001, 1.00005, 1.001, 1.05, 1.5, 2.0, 0.9, 0.5, 0.0, -3.0, -1e6, 1e6], dtype=torch.float64)
    I = torch.full_like(V, current)
    dt = torch.tensor(0.3, dtype=torch.float64)
    d64, d32 = n.next_spike((V, I)), n.next_spike((V.float(), I.float())).double()
    fin = torch.isfinite(d64)
    assert torch.equal(torch.isfinite(d32), fin)
    assert ((d32 - d64).abs() / d64.abs().clamp(min=1e-3))[fin].max() < 1e-3 if fin.any() else True
    f64, f32 = n.flow(V, I, dt)[0], n.flow(V.float(), I.float(), dt.float())[0].double()
    assert ((f32 - f64).abs() / f64.abs().clamp(min=1)).max() < 1e-5
    Vg, Ig = V.float().requires_grad_(), I.float().requires_grad_()
    t = n.next_spike((Vg, Ig))
    (t[torch.isfinite(t)].sum() + n.flow(Vg, Ig, dt.float())[0].clamp(-1e5, 1e5).sum()).backward()
    assert torch.isfinite(Vg.grad).all() and torch.isfinite(Ig.grad).all()


def test_phase_map_is_the_voltage_jump():
    """H(phi, w) = Phi(Phi^-1(phi) + w), Theta = tau pi / r, and the free phase reaches Theta at V = inf."""
    n = Theta(tau=1.5, I0=2.0)
    phi = torch.linspace(0.1, n.period - 0.1, 50, dtype=torch.float64)
    for w in (-2.0, -0.1, 0.3, 5.0):
        assert torch.allclose(n.H(phi, torch.tensor(w, dtype=torch.float64)), n.Phi(n.iPhi(phi) + w), atol=1e-9)
    assert n.period == pytest.approx(1.5 * math.pi / math.sqrt(1.75))
    assert float(n.iPhi(torch.tensor(n.period - 1e-9, dtype=torch.float64))) > 1e8
    edge = torch.tensor([0.0, n.period], dtype=torch.float64)
    assert torch.equal(n.H(edge, torch.tensor(3.0, dtype=torch.float64)), edge)  # V = -inf, +inf: unchanged


def tiny_net(seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(hidden=[6, 5], w_scale=8.0, K=200, phi0=0.8)
    args.update(kw)
    neuron = Theta(phi0=args.pop("phi0"))
    net = EventMLP([20], 3, neuron=neuron, **args).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.where(torch.rand(4, 20, generator=g) < 0.5, 0.01, math.inf).double()
    x[:, :5] = 0.3
    return net, x, torch.tensor([0, 1, 2, 0])


@pytest.mark.parametrize("neuron", ["theta", "qif_exp"])
def test_gradient_equals_central_finite_differences_for_every_parameter(neuron):
    if neuron == "theta":
        net, x, y = tiny_net()
    else:  # weights act on the current: a larger scale makes the layers fire
        net, x, y = tiny_net(w_scale=40.0)
        torch.manual_seed(0)
        net = EventMLP([20], 3, neuron=QIFExp(v0=0.5), hidden=[6, 5], w_scale=40.0, K=200).double()
    decoder = EventFirstSpike(T=net.T, gamma=0.01)

    def loss():
        return decoder.loss(net(x), y)

    out = net(x)
    assert torch.isfinite(out[1]).any() and torch.isinf(out[1]).any()  # ordinary and pseudospike outputs both
    loss().backward()
    h, checked = 1e-6, 0
    for p in net.parameters():
        grad = p.grad.clone().view(-1)
        flat = p.data.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + h
            up = loss().item()
            flat[i] = old - h
            down = loss().item()
            flat[i] = old
            fd = (up - down) / (2 * h)
            assert abs(fd - grad[i].item()) <= 1e-3 * max(abs(fd), abs(grad[i].item())) + 1e-8, (
                p.shape,
                i,
                fd,
                grad[i],
            )
            checked += 1
    assert checked == 20 * 6 + 6 * 5 + 5 * 3 + 6 + 5 + 3


def _sweep(net, x, y, weight, index, values):
    decoder = EventFirstSpike(T=net.T, gamma=0.01)
    losses, counts, times = [], [], []
    with torch.no_grad():
        for v in values:
            weight.data[index] = v
            out = net(x)
            losses.append(decoder.loss(out, y).item())
            counts.append(net.last.spike_counts(sum(net.sizes))[0])
            times.append(net.last)
    return np.array(losses), counts, times


@pytest.mark.parametrize("layer, w_scale, phi0", [(0, 2.0, 0.5), (2, 8.0, 0.7)])
def test_spikes_appear_only_at_the_trial_end_and_the_loss_stays_continuous(layer, w_scale, phi0):
    """Sweep one weight (into a hidden neuron, or into an output) until that neuron's first spike enters the
    trial: the spike appears at t = T, never inside the trial, and the loss has no jump there."""
    net, x, y = tiny_net(seed=3, w_scale=w_scale, phi0=phi0)
    x, y = x[:1], y[:1]
    off = net.offsets()
    post = 0  # neuron 0 of the layer
    weight = net.weights[layer]
    neuron = off[layer] + post
    values = np.linspace(-3.0, 12.0, 1501)
    if layer == 0:
        pre = int(torch.isfinite(x[0]).nonzero()[0])  # an input that spikes
    else:  # the most active pre-synaptic neuron
        with torch.no_grad():
            net(x)
        counts = net.last.spike_counts(sum(net.sizes))[0]
        pre = int(counts[off[layer - 1] : off[layer]].argmax())
        assert counts[off[layer - 1] + pre] > 0
    base = weight.data.clone()
    weight.data.copy_(base)
    losses, counts, runs = _sweep(net, x, y, weight, (post, pre), values)
    n = np.array([float(c[neuron]) for c in counts])
    changes = np.nonzero(np.diff(n))[0]
    assert changes.size >= 1, "the sweep never adds a spike to the neuron"
    for i in changes:
        # where the count changes, the neuron's last spike of the larger count lies at the end of the trial
        k = i if n[i] > n[i + 1] else i + 1
        ev = runs[k]
        t_last = ev.times[0][ev.source[0] == neuron].max().item()
        assert t_last > net.T - 0.05, (values[k], t_last)
    step = np.abs(np.diff(losses))
    typical = np.median(step) + 1e-12
    assert step.max() < 50 * typical + 1e-3, (step.max(), typical)  # no jump anywhere
    for i in changes:
        assert step[i] < 20 * typical + 1e-4, (values[i], step[i], typical)  # none where a spike appears


@pytest.mark.parametrize("neuron, top, points", [("theta", 30.0, 3201), ("qif_exp", 150.0, 1201)])
def test_pseudospike_time_meets_the_ordinary_time_at_the_trial_end(neuron, top, points):
    """An output's time moves through T continuously when its first spike enters the trial."""
    net, x, y = tiny_net(seed=3, w_scale=8.0, phi0=0.7)
    if neuron == "qif_exp":
        torch.manual_seed(3)
        net = EventMLP([20], 3, neuron=QIFExp(v0=0.5), hidden=[6, 5], w_scale=40.0, K=200).double()
    x = x[:1]
    w = net.weights[2]
    with torch.no_grad():
        out = net(x)
        c = int(out[0, 0].argmax())  # the latest output
        ts, fired = [], []
        for v in np.linspace(-2.0, top, points):
            w[c, :] = v
            o = net(x)
            ts.append(o[0, 0, c].item())
            fired.append(bool(torch.isfinite(o[1, 0, c])))
    ts, fired = np.array(ts), np.array(fired)
    assert fired.any() and not fired.all()
    i = int(np.nonzero(fired != fired[0])[0][0])
    assert abs(ts[i] - net.T) < 0.05 and abs(ts[i - 1] - net.T) < 0.05
    assert np.abs(np.diff(ts)).max() < 0.05


def test_running_out_of_events_is_flagged():
    net, x, _ = tiny_net()
    net.K = 3
    with torch.no_grad():
        net(x)
    assert net.last.exhausted.all() and (net.last.used <= 3).all()
    net.K = 500
    with torch.no_grad():
        net(x)
    assert not net.last.exhausted.any()
    assert net.last.times.shape[1] < 500  # stopped once every trial reached T


def test_flip_acts_in_training_only():
    net, x, _ = tiny_net(flip=0.5)
    net.eval()
    assert torch.equal(net._flip(x), x)
    net.train()
    torch.manual_seed(0)
    flipped = net._flip(x)
    changed = flipped != x
    assert 0.3 < changed.float().mean() < 0.7
    assert torch.isinf(flipped[changed & torch.isfinite(x)]).all()  # a spiking input goes silent
    assert (flipped[changed & torch.isinf(x)] == 0.01).all()  # a silent one spikes at the first time


def test_binned_latency_by_hand():
    enc = BinnedLatency(bins=1)
    x = torch.tensor([[0.0, 127 / 255, 128 / 255, 1.0]])
    t = enc(x)
    assert torch.isinf(t[0, :2]).all()
    assert t[0, 2].item() == pytest.approx(math.log(1 / 0.99)) and t[0, 3] == t[0, 2]
    enc = BinnedLatency(bins=3, v_th=0.01)  # 256 // 4 = 64: bins of 64 grey levels
    x = torch.tensor([255, 192, 191, 128, 127, 64, 63, 0]) / 255.0
    want = [math.log(3 / 2.97)] * 2 + [math.log(2 / 1.97)] * 2 + [math.log(1 / 0.97)] * 2 + [math.inf] * 2
    assert enc(x).tolist() == pytest.approx(want)
    with pytest.raises(Exception, match="v_th"):
        BinnedLatency(bins=200)


def test_adabelief_matches_its_formula():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = AdaBelief([p], lr=0.1, betas=(0.9, 0.99), eps=1e-8, eps_root=1e-12)
    m = s = np.zeros(2)
    w = np.array([1.0, -2.0])
    for k, g in enumerate(([0.5, -1.0], [0.1, 0.3], [-0.2, 0.2]), start=1):
        g = np.array(g)
        p.grad = torch.tensor(g)
        opt.step()
        m = 0.9 * m + 0.1 * g
        s = 0.99 * s + 0.01 * (g - m) ** 2 + 1e-12
        w = w - 0.1 * (m / (1 - 0.9**k)) / (np.sqrt(s / (1 - 0.99**k)) + 1e-8)
        assert p.detach().numpy() == pytest.approx(w, rel=1e-12)


# ------------------------------------------------------------------ the runner


def _mnist(tmp_path):
    write_fake_mnist(tmp_path / "data", n_train=60, n_test=20)
    return [f"dataset.root={tmp_path / 'data'}"]


EXACT = [
    "experiment=fmnist_exact",
    "dataset=mnist",
    "dataset.val=20",
    "batch_size=20",
    "epochs=2",
    "network.hidden=[12]",
    "progress=false",
]


def test_dendsn_train_exact_logs_what_the_method_needs(tmp_path, dendsn_here):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    p = dendsn_here(
        "train",
        *EXACT,
        *_mnist(tmp_path),
        f"hydra.run.dir={tmp_path / 'run'}",
        "logger.figures_every=1",
        "logger.log_every_n_steps=1",
    )
    assert p.returncode == 0, p.stderr
    assert "by ordinary spikes alone" in p.stderr
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "completed"
    row = m["history"][-1]
    for key in ("train_acc_ordinary", "val_acc_ordinary", "test_acc_ordinary"):
        assert 0.0 <= row[key] <= row[key.replace("_ordinary", "")] + 1e-9 or 0.0 <= row[key] <= 1.0
    assert row["lr"] == pytest.approx(0.004 * math.exp(-4 / (100 * 2)))  # lr_schedule=exp, 2 steps an epoch
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in (
        "val/acc_ordinary",
        "test/acc_ordinary",
        "train/acc_ordinary",
        "never_fired/layer1",
        "never_fired/readout",
        "spikes_per_neuron/layer1",
        "spikes_per_neuron/readout",
        "events/used_mean",
        "events/used_max",
        "events/K",
        "events/exhausted",
        "events/train_exhausted",
        "grad_norm/layer1",
        "grad_norm/readout",
    ):
        assert tag in tags, (tag, sorted(tags))
    assert acc.Scalars("events/K")[-1].value == 200
    assert "raster/network" in acc.Tags()["images"] and "rates/layer1" in acc.Tags()["images"]
    assert "weights/layer1/phi0" in acc.Tags()["histograms"]
    # dendsn eval rebuilds the event network from the checkpoint and scores it as training did
    best = m["best"]
    p = dendsn_here("eval", f"ckpt={run / 'checkpoints' / 'best.pt'}")
    assert p.returncode == 0, p.stderr
    assert f"{best['test_acc']:.2%}" in p.stdout + p.stderr
    # resume continues the run from its checkpoint
    p = dendsn_here(
        "train", *EXACT, *_mnist(tmp_path / "again"), "epochs=3", f"resume={run}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert p.returncode == 0, p.stderr
    assert json.loads((run / "metrics.json").read_text())["epochs_completed"] == 3


def test_qif_exp_trains_through_the_cli(tmp_path, dendsn_here):
    p = dendsn_here(
        "train",
        *EXACT,
        *_mnist(tmp_path),
        "epochs=1",
        "neuron=qif_exp",
        "network.w_scale=5",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert p.returncode == 0, p.stderr
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "completed" and "test_acc_ordinary" in m["final"]
    sd = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert set(sd) == {"weights.0", "weights.1", "init.0", "init.1"}


def test_running_out_of_events_is_reported(tmp_path, dendsn_here):
    p = dendsn_here(
        "train",
        *EXACT,
        *_mnist(tmp_path),
        "epochs=1",
        "network.K=2",
        "neuron.phi0=0.9",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert p.returncode == 0, p.stderr
    assert "ran out of network.K=2 events" in p.stderr and "raise network.K" in p.stderr


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["learning=exact"], ["learning=exact", "network=mlp", "experiment=fmnist_exact"]),
        (["network=event_mlp"], ["network=event_mlp", "neuron=dend_lif"]),
        (["experiment=fmnist_exact", "neuron=lif"], ["neuron=lif", "neuron=theta"]),
        (["experiment=fmnist_exact", "learning=bptt"], ["learning=bptt", "learning=exact"]),
        (["experiment=fmnist_exact", "encoder=latency"], ["encoder=latency", "encoder=binned_latency"]),
        (["experiment=fmnist_exact", "readout=counts"], ["readout=counts", "readout=first_spike"]),
        (["experiment=fmnist_exact", "readout.silent_time=3"], ["readout.silent_time", "pseudospike"]),
        (["experiment=fmnist_exact", "amp=bf16"], ["amp=bf16", "amp=none"]),
        (["experiment=fmnist_exact", "dataset=synthetic"], ["dataset=synthetic", "fashion_mnist"]),
        (["experiment=fmnist_exact", "dataset.sequential=rows"], ["dataset=fashion_mnist", "static images"]),
        (["experiment=fmnist_exact", "neuron.I0=0.2"], ["I0 must be > 0.25"]),
        (["experiment=fmnist_exact", "network.K=0"], ["K must be an integer >= 1"]),
        (["experiment=fmnist_exact", "neuron.phi0=2"], ["phi0 must be in [0, 1]"]),
        (["experiment=fmnist_exact", "encoder.bins=150"], ["encoder.v_th", "never spike"]),
        (["experiment=fmnist_exact", "lr_decay_epochs=0"], ["lr_decay_epochs=0"]),
        (["experiment=fmnist_exact", "optim.betas=[0.9,1.5]"], ["betas"]),
    ],
)
def test_combinations_that_cannot_work_fail_in_one_line(tmp_path, dendsn_here, args, fragments):
    data = _mnist(tmp_path) if "experiment=fmnist_exact" in args and "dataset=synthetic" not in args else []
    p = dendsn_here("train", *args, *data, f"hydra.run.dir={tmp_path / 'run'}")
    one_error(p, *fragments)


def test_dendsn_simulate_refuses_the_event_neuron(dendsn_here):
    one_error(dendsn_here("simulate", "neuron=theta"), "neuron=theta is event-driven", "neuron=qif")


def test_a_masked_synapse_is_refused(tmp_path, dendsn_here):
    p = dendsn_here(
        "train",
        "experiment=fmnist_exact",
        "synapse=masked",
        "synapse.sparsity=0.5",
        *_mnist(tmp_path),
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    one_error(p, "synapse=masked", "synapse=plain")
