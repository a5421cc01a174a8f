"""The spike-coding encoders (relative_latency, poisson_hz, sstb/mstb, phase, delta, population): exact
outputs on tiny hand-made inputs, one-line errors for bad parameters, and three tiny runs of the real CLI."""

import json
import math

import pytest
import torch
from conftest import one_error
from test_data import write_fake_mnist

from dendsn_cli.encoders import MSTB, SSTB, Delta, Latency, Phase, Poisson, PoissonHz, Population, RelativeLatency
from dendsn_cli.errors import UserError

NAN = float("nan")


def expected_train(T, spikes, shape):
    """[T, *shape] zeros with a 1 at every (t, *index) of `spikes`."""
    out = torch.zeros(T, *shape)
    for t, *index in spikes:
        out[(t, *index)] = 1.0
    return out


# --------------------------------------------------------------------------- relative_latency


def test_relative_latency_uses_each_samples_own_range():
    # sample 0: x' = (x - 0.25) / 0.5 = 0, 0.25, 0.5, 1 -> t_s = round((1 - x') * 4) = -, 3, 2, 0 (x' = 0 silent)
    # sample 1 = 3 * sample 0 + 1: the same x', the same spikes; sample 2 is constant: no spikes
    x0 = torch.tensor([0.25, 0.375, 0.5, 0.75])
    x = torch.stack([x0, 3 * x0 + 1, torch.full((4,), 0.5)])  # [B=3, 4]
    out = RelativeLatency()(x, 5)
    spikes = [(3, 0, 1), (2, 0, 2), (0, 0, 3), (3, 1, 1), (2, 1, 2), (0, 1, 3)]
    assert torch.equal(out, expected_train(5, spikes, (3, 4)))


def test_relative_latency_is_latency_on_a_sample_spanning_0_to_1():
    x = torch.tensor([[[0.0, 0.3], [0.6, 1.0]]])  # [B=1, 2, 2]: min 0, max 1
    assert torch.equal(RelativeLatency(threshold=0.2)(x, 6), Latency(threshold=0.2)(x, 6))


# --------------------------------------------------------------------------- poisson_hz


def test_poisson_hz_is_poisson_with_p_per_step_of_rate_times_dt():
    x = torch.tensor([[0.0, 0.3, 1.0, 2.0]])
    torch.manual_seed(3)
    a = PoissonHz(max_rate=250.0, dt=2.0)(x, 6)  # 250 Hz * 2 ms = 0.5 spikes per step
    torch.manual_seed(3)
    assert torch.equal(a, Poisson(rate_scale=0.5)(x, 6))
    assert torch.all(a[:, 0, 0] == 0) and torch.all(a[:, 0, 3] == 1)  # p = 0 and p = clamp(1.0) = 1
    assert torch.all(PoissonHz(max_rate=1000.0, dt=1.0)(x, 5)[:, 0, 2] == 1)  # 1000 Hz at 1 ms: every step


def test_poisson_hz_refuses_more_than_one_spike_per_step():
    with pytest.raises(UserError) as err:
        PoissonHz(max_rate=500.0, dt=4.0)
    assert str(err.value) == (
        "encoder.max_rate=500.0 is invalid: with encoder.dt=4 ms it asks for 2 spikes per step "
        "at x = 1, more than 1; use encoder.max_rate <= 250 (1000 / dt) or a smaller encoder.dt"
    )


# --------------------------------------------------------------------------- sstb / mstb


def test_sstb_maps_times_to_steps_and_drops_the_rest():
    # dt = 1, T = 4: times 0 -> 0, 2.5 -> 2, 3.99 -> 3; -1, NaN and 4.0 (= T * dt) give no spike
    x = torch.tensor([[0.0, 2.5, -1.0, NAN, 3.99, 4.0]])
    out = SSTB()(x, 4)
    assert torch.equal(out, expected_train(4, [(0, 0, 0), (2, 0, 1), (3, 0, 4)], (1, 6)))


def test_sstb_reads_images_as_times_with_scale():
    # time = 6 x ms, dt = 2 ms, T = 3: x = 0, 0.25, 0.5, 1 -> 0, 1.5, 3, 6 ms -> steps 0, 0, 1, (3: outside)
    x = torch.tensor([[[0.0, 0.25], [0.5, 1.0]]])  # [B=1, 2, 2]
    out = SSTB(dt=2.0, scale=6.0)(x, 3)
    assert torch.equal(out, expected_train(3, [(0, 0, 0, 0), (0, 0, 0, 1), (1, 0, 1, 0)], (1, 2, 2)))


def test_mstb_ors_the_spike_times_of_each_input():
    # input 0: 0, 0.5 (one step: one spike), 3 (outside T = 3); input 1: 2, 2.5, padding -1
    x = torch.tensor([[[0.0, 0.5, 3.0], [2.0, 2.5, -1.0]], [[1.0, NAN, NAN], [-1.0, -1.0, -1.0]]])  # [B=2, N=2, K=3]
    out = MSTB()(x, 3)
    assert torch.equal(out, expected_train(3, [(0, 0, 0), (2, 0, 1), (1, 1, 0)], (2, 2)))
    assert MSTB().output_shape((2, 3)) == (2,) and MSTB().output_shape((5,)) == (1,)
    assert torch.equal(MSTB()(torch.tensor([[0.0, 2.0]]), 3), expected_train(3, [(0, 0, 0), (2, 0, 0)], (1, 1)))


# --------------------------------------------------------------------------- phase


def test_phase_writes_x_in_binary_and_repeats():
    # K = 3: 0.625 = .101, 0.375 = .011, 0.3 -> floor(2.4) = 2 = .010, 1.0 -> clamped to 7 = .111, 0 = .000
    # T = 7: phases 0 1 2 0 1 2 0 (the last period cut after its first phase)
    x = torch.tensor([[0.625, 0.375, 0.3, 1.0, 0.0]])
    bits = {0: [1, 0, 1], 1: [0, 1, 1], 2: [0, 1, 0], 3: [1, 1, 1], 4: [0, 0, 0]}
    expected = torch.tensor([[bits[i][t % 3] for i in range(5)] for t in range(7)], dtype=torch.float32)
    assert torch.equal(Phase(phases=3)(x, 7), expected.unsqueeze(1))  # [T, B=1, 5]


def test_phase_spikes_decode_to_x_rounded_down():
    x = torch.rand(4, 3, generator=torch.Generator().manual_seed(0))
    out = Phase()(x, 8)  # K = 8, one period
    weights = 0.5 ** torch.arange(1, 9).float()  # 2^-(i+1)
    assert torch.equal((out * weights.view(8, 1, 1)).sum(0), torch.floor(x * 256) / 256)


# --------------------------------------------------------------------------- delta


def delta_sequence():
    # [B=1, T=4, C=2]; channel 0: 0, 0.5, 0.5, 0.2; channel 1: 0.25, 0.25, 0.5, 0
    return torch.tensor([[[0.0, 0.25], [0.5, 0.25], [0.5, 0.5], [0.2, 0.0]]])


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        (dict(), [[0, 1], [1, 0], [0, 1], [0, 0]]),  # d[0] = x[0] - 0
        (dict(first=False), [[0, 0], [1, 0], [0, 1], [0, 0]]),  # d[0] = 0
        (dict(off_spike=True), [[0, 1], [1, 0], [0, 1], [-1, -1]]),  # -0.3, -0.5 <= -0.1
        (dict(threshold=0.3), [[0, 0], [1, 0], [0, 0], [-0, 0]]),  # 0.25 < 0.3
    ],
)
def test_delta_on_time_major_inputs(kwargs, expected):
    out = Delta(**kwargs)(delta_sequence(), 4, time_major=True)  # [T=4, B=1, C=2]
    assert torch.equal(out, torch.tensor(expected, dtype=torch.float32).unsqueeze(1))


def test_delta_on_static_inputs_spikes_at_step_0_only():
    x = torch.tensor([[0.05, 0.2, 1.0]])
    out = Delta()(x, 3)
    assert torch.equal(out, expected_train(3, [(0, 0, 1), (0, 0, 2)], (1, 3)))
    with pytest.raises(UserError, match=r"^encoder\.first=False is invalid .*; use encoder\.first=true"):
        Delta(first=False)(x, 3)
    with pytest.raises(UserError, match=r"T=5 .* 4 time steps"):
        Delta()(delta_sequence(), 5, time_major=True)


# --------------------------------------------------------------------------- population


def test_population_currents_are_gaussian_tuning_curves():
    # n = 3 over [0, 1]: centres 0, 0.5, 1, sigma = 0.5; feature f's neuron j at f * 3 + j
    x = torch.tensor([[0.5, 0.0]])
    out = Population(n=3)(x, 2)  # [T=2, B=1, 6]
    g = lambda d: math.exp(-d * d / (2 * 0.5**2))  # noqa: E731
    expected = torch.tensor([g(0.5), 1.0, g(0.5), 1.0, g(0.5), g(1.0)])
    assert out.shape == (2, 1, 6) and torch.allclose(out[0, 0], expected) and torch.equal(out[0], out[1])
    assert Population(n=3).output_shape((2,)) == (6,) and Population().output_shape((1, 28, 28)) == (784 * 8,)
    wide = Population(n=2, lo=-1.0, hi=1.0, sigma=1.0)(torch.tensor([[0.0]]), 1)  # centres -1, 1
    assert torch.allclose(wide, torch.full((1, 1, 2), math.exp(-0.5)))


def test_population_latency_mode_fires_stronger_responses_earlier():
    # T = 5: t_s = round((1 - r) * 4): r = 1 -> 0, exp(-1/2) = 0.61 -> 2, exp(-2) = 0.135 -> 3 (silent at threshold 0.2)
    x = torch.tensor([[0.5, 0.0]])
    out = Population(n=3, mode="latency")(x, 5)
    spikes = [(2, 0, 0), (0, 0, 1), (2, 0, 2), (0, 0, 3), (2, 0, 4), (3, 0, 5)]
    assert torch.equal(out, expected_train(5, spikes, (1, 6)))
    assert torch.equal(Population(n=3, mode="latency", threshold=0.2)(x, 5), expected_train(5, spikes[:-1], (1, 6)))


# --------------------------------------------------------------------------- all of them


ALL = [RelativeLatency(), PoissonHz(), SSTB(), MSTB(), Phase(), Delta(), Population(n=2)]


@pytest.mark.parametrize("encoder", ALL, ids=lambda e: type(e).__name__)
def test_float64_stays_float64(encoder):
    out = encoder(torch.full((2, 3, 2), 0.5, dtype=torch.float64), 3)
    assert out.dtype == torch.float64 and out.shape[:2] == (3, 2)


@pytest.mark.parametrize(
    "encoder", [RelativeLatency(), SSTB(), MSTB(), Phase(), Population()], ids=lambda e: type(e).__name__
)
def test_spike_trains_are_refused_in_one_line(encoder):
    with pytest.raises(UserError, match=rf"^encoder={encoder.name} needs static inputs .*; use encoder=direct$"):
        encoder(torch.zeros(2, 4, 3), 4, time_major=True)


@pytest.mark.parametrize(
    "cls,kwargs,key",
    [
        (PoissonHz, dict(max_rate=0), "max_rate"),
        (PoissonHz, dict(dt=-1.0), "dt"),
        (SSTB, dict(dt=0.0), "dt"),
        (MSTB, dict(scale=float("inf")), "scale"),
        (Phase, dict(phases=0), "phases"),
        (Phase, dict(phases=31), "phases"),
        (Delta, dict(threshold=0.0), "threshold"),
        (Delta, dict(off_spike=1), "off_spike"),
        (Population, dict(n=1), "n"),
        (Population, dict(lo=1.0, hi=1.0), "hi"),
        (Population, dict(sigma=0), "sigma"),
        (Population, dict(mode="rate"), "mode"),
        (Population, dict(threshold=1.0), "threshold"),
        (RelativeLatency, dict(threshold=-0.5), "threshold"),
    ],
)
def test_bad_parameters_name_their_key(cls, kwargs, key):
    with pytest.raises(UserError, match=rf"^encoder\.{key}=") as err:
        cls(**kwargs)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- the real CLI


def test_cli_bad_parameter_and_row_sequences_are_one_line(dendsn_here):
    one_error(
        dendsn_here(
            "train",
            "encoder=phase",
            "encoder.phases=0",
            "progress=false",
            "dataset.n_train=50",
            "dataset.n_test=10",
            "dataset.val=10",
        ),
        "encoder.phases=0 is invalid",
        "use ",
    )
    one_error(
        dendsn_here(
            "train", "dataset=mnist", "dataset.sequential=rows", "T=28", "encoder=population", "progress=false"
        ),
        "encoder=population",
        "dataset.sequential=rows",
        "encoder=delta",
    )


def tiny_mnist_args(tmp_path, *more):
    write_fake_mnist(tmp_path / "data", n_train=24, n_test=8)
    return [
        "train",
        "dataset=mnist",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.val=0",
        "network.hidden=[8]",
        "batch_size=8",
        "epochs=1",
        "progress=false",
        "logger.rasters=false",
        "hydra.run.dir=run",
        *more,
    ]


@pytest.mark.parametrize(
    "more",
    [
        ["encoder=population", "encoder.n=2", "encoder.mode=latency", "T=4"],  # the network sees 784 * 2 inputs
        ["encoder=delta", "dataset.sequential=rows", "T=28", "encoder.off_spike=true"],  # allowed on row sequences
        ["encoder=sstb", "encoder.scale=3", "T=4"],  # pixels read as spike times
    ],
    ids=["population", "delta_rows", "sstb_images"],
)
def test_a_tiny_run_trains(tmp_path, dendsn_here, more):
    p = dendsn_here(*tiny_mnist_args(tmp_path, *more))
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"
