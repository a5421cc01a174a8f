"""`dendsn simulate`: the stimulus generators against their equations, the f-I curve of a point LIF against
its discrete-time firing rate, the dendritic default, a sweep's combined curve, and bad inputs (one line)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from conftest import one_error

from dendsn_cli import stimuli as sim


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ generators
def test_constant_current_is_the_amplitude_at_every_step_and_input():
    i = sim.Constant()(torch.tensor([0.0, 0.5, 2.0]), 7, 5)
    assert i.shape == (7, 3, 5)
    assert torch.equal(i, torch.tensor([0.0, 0.5, 2.0]).view(1, 3, 1).expand(7, 3, 5))


@pytest.mark.parametrize("kind, wave", [("Sine", math.sin), ("Cosine", math.cos)])
def test_sine_and_cosine_follow_offset_plus_amplitude_times_wave(kind, wave):
    f, dt, offset, phase = 25.0, 2.0, 0.3, 0.7
    gen = getattr(sim, kind)(frequency=f, offset=offset, phase=phase, dt=dt)
    amps = [0.0, 1.0, -2.5]
    i = gen(torch.tensor(amps), 40, 3)
    assert i.shape == (40, 3, 3)
    for t in (0, 1, 7, 39):
        for b, a in enumerate(amps):
            expected = offset + a * wave(2 * math.pi * f * t * dt / 1000 + phase)
            assert i[t, b].tolist() == pytest.approx([expected] * 3, abs=1e-6)
    # 25 Hz at 2 ms per step: a period of 20 steps
    assert torch.allclose(i[:20], i[20:40], atol=1e-5)


def test_poisson_mean_rate_and_bounds_from_a_seeded_draw():
    rate, dt, n_inputs, T, n = 200.0, 1.0, 10, 2000, 5
    gen = sim.Poisson(rate=rate, n_inputs=n_inputs, dt=dt)
    i = gen(torch.tensor([1.0, 3.0]), T, n, generator=torch.Generator().manual_seed(0))
    assert i.shape == (T, 2, n)
    counts = i[:, 0]
    assert torch.equal(counts, counts.round()) and counts.min() >= 0 and counts.max() <= n_inputs
    p = rate * dt / 1000
    assert counts.mean().item() / n_inputs == pytest.approx(p, abs=0.01)  # ~8 standard errors
    assert torch.equal(i[:, 1], 3.0 * counts)  # the same trains for every amplitude
    again = gen(torch.tensor([1.0, 3.0]), T, n, generator=torch.Generator().manual_seed(0))
    assert torch.equal(i, again)
    w = sim.Poisson(rate=rate, n_inputs=n_inputs, random_weight=True, dt=dt)(
        torch.tensor([1.0]), 500, n, generator=torch.Generator().manual_seed(1)
    )
    assert w.min() >= 0 and w.max() <= 2 * n_inputs and w.mean().item() == pytest.approx(n_inputs * p, rel=0.1)


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: sim.Poisson(rate=-1.0), "rate must be >= 0"),
        (lambda: sim.Poisson(rate=2000.0, dt=1.0), "more than one spike per step"),
        (lambda: sim.Poisson(n_inputs=0), "n_inputs must be an integer >= 1"),
        (lambda: sim.Sine(frequency=600.0, dt=1.0), "Nyquist"),
        (lambda: sim.Cosine(dt=0.0), "dt must be > 0"),
    ],
)
def test_generators_refuse_values_out_of_range(make, fragment):
    with pytest.raises(ValueError, match=fragment):
        make()


# ------------------------------------------------------------------ the command
def lif_rate(I: float, tau: float, T: int) -> float:
    """Spikes per step of dendsn's LIF (decay_input, hard reset to 0, threshold 1) under a constant current I:
    from v = 0, h[n] = I (1 - (1 - 1/tau)^n); it fires at the first n with h[n] >= 1 and starts again from 0."""
    a = 1 - 1 / tau
    if I <= 1:
        return 0.0
    n = math.ceil(math.log(1 - 1 / I) / math.log(a) - 1e-12)
    for m in range(max(1, n - 1), n + 2):  # the margin from the threshold is not a rounding question
        assert abs(I * (1 - a**m) - 1) > 1e-4
    return (T // n) / T


def test_point_lif_f_i_curve_is_the_discrete_lif_rate_and_the_run_writes_csv_png_and_events(dendsn_here, tmp_path):
    amps, tau, T = [0.0, 0.5, 1.05, 1.2, 1.5, 2.0, 3.0, 6.0], 4.0, 120
    p = dendsn_here(
        "simulate",
        "neuron=lif",
        f"neuron.tau={tau}",
        f"T={T}",
        "dt=0.5",
        "n_neurons=1",
        "traces=1",
        f"amplitudes=[{','.join(map(str, reversed(amps)))}]",
        "hydra.run.dir=run",
    )
    assert p.returncode == 0, p.stderr
    run = tmp_path / "run"
    rows = read_rows(run / "fI.csv")
    assert [float(r["amplitude"]) for r in rows] == amps  # sorted
    for r in rows:
        expected = lif_rate(float(r["amplitude"]), tau, T)
        assert float(r["spikes_per_step"]) == pytest.approx(expected, abs=1e-5)
        assert float(r["rate_hz"]) == pytest.approx(expected * 1000 / 0.5, abs=1e-2)  # dt = 0.5 ms
        assert float(r["neuron_0_hz"]) == float(r["rate_hz"])
    assert (run / "fI.png").stat().st_size > 10_000 and (run / ".hydra").is_dir()
    summary = json.loads((run / "simulate.json").read_text())
    assert summary["rheobase"] == 1.05 and summary["monotone"] and summary["neuron"] == "lif"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ev = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert [s.value for s in ev.Scalars("fI/amplitude")] == pytest.approx(amps)
    assert [s.step for s in ev.Scalars("fI/rate_hz")] == list(range(len(amps)))
    images = ev.Tags()["images"]
    assert {"fI", "raster", "stimulus", "traces/07_amplitude_6"} <= set(images), images
    assert "fI.csv, fI.png" in p.stderr


def test_default_dendritic_neuron_gives_a_monotone_curve_and_stimulates_chosen_compartments(dendsn_here, tmp_path):
    p = dendsn_here("simulate", "figures=false", "T=100", "hydra.run.dir=all")
    assert p.returncode == 0, p.stderr
    rates = [float(r["rate_hz"]) for r in read_rows(tmp_path / "all/fI.csv")]
    assert len(rates) == 21 and rates[0] == 0 and rates[-1] > 0
    assert all(b >= a for a, b in zip(rates, rates[1:])), rates
    assert not (tmp_path / "all/fI.png").exists()
    # one of the four segregated compartments: a quarter of the soma drive, so it fires later
    p = dendsn_here("simulate", "figures=false", "T=100", "compartments=[0]", "amplitudes=[2,4,6]", "hydra.run.dir=one")
    assert p.returncode == 0, p.stderr
    one = {float(r["amplitude"]): float(r["rate_hz"]) for r in read_rows(tmp_path / "one/fI.csv")}
    assert one[2.0] == 0 < one[6.0] and rates[-1] > one[2.0]


def test_a_sweep_writes_one_combined_curve_per_job(dendsn_here, tmp_path):
    p = dendsn_here(
        "simulate", "-m", "neuron.tau=2,8", "figures=false", "T=60", "amp_max=3", "amp_steps=7", "hydra.sweep.dir=sweep"
    )
    assert p.returncode == 0, p.stderr
    root = tmp_path / "sweep"
    assert sorted(d.name for d in root.iterdir() if d.is_dir()) == ["0_neuron.tau=2", "1_neuron.tau=8"]
    rows = read_rows(root / "fI.csv")
    assert {r["label"] for r in rows} == {"neuron.tau=2", "neuron.tau=8"} and len(rows) == 14
    by = {(r["label"], float(r["amplitude"])): float(r["rate_hz"]) for r in rows}
    assert by[("neuron.tau=8", 1.5)] < by[("neuron.tau=2", 1.5)]  # a slower soma fires less
    assert (root / "fI.png").stat().st_size > 10_000
    assert "f-I curves of 2 job(s)" in p.stdout


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["stimulus=nope"], ["stimulus=nope is not an option of 'stimulus'", "poisson"]),
        (["stimulus.bogus=1"], ["stimulus.bogus is not a known key"]),
        (["+stimulus.bogus=1"], ["stimulus.bogus is not a key of stimulus=constant"]),
        (["stimulus=poisson", "stimulus.rate=-5"], ["stimulus: rate must be >= 0"]),
        (["amplitudes=[1,x]"], ["amplitudes[1]='x' has the wrong type"]),
        (["amplitudes=[]"], ["amplitudes=[] is empty"]),
        (["amplitudes=2"], ["amplitudes=2 has the wrong type: expected a list"]),
        (["amp_min=3", "amp_max=1"], ["amp_min=3.0 is above amp_max=1.0"]),
        (["bogus=1"], ["bogus is not a known key of dendsn simulate"]),
        (["neuron=lif", "compartments=[0]"], ["applies to dendritic neurons only", "neuron=lif"]),
        (["compartments=[4]"], ["4 is out of range", "indices 0..3"]),
        (["-m", "stimulus=poisson", "stimulus.rate=10,-1"], ["stimulus: rate must be >= 0"]),
        (["stimulus=poisson", "stimulus.dt=0.5"], ["stimulus.dt=0.5 differs from dt=1.0", "set dt=0.5"]),
    ],
)
def test_bad_inputs_end_in_one_line(dendsn_here, tmp_path, args, fragments):
    one_error(dendsn_here("simulate", *args, "hydra.run.dir=run", "hydra.sweep.dir=sweep"), *fragments)
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_help_usage_and_list_show_simulate_and_its_stimuli(dendsn_here):
    p = dendsn_here("simulate", "--help")
    assert p.returncode == 0
    assert "stimulus: constant*, cosine, poisson, sine" in p.stdout and "neuron: " in p.stdout
    assert "rate=100.0, n_inputs=10, random_weight=false" in p.stdout
    assert "amp_steps" in p.stdout and "compartments" in p.stdout
    assert "simulate" in dendsn_here("--help").stdout
    listed = dendsn_here("list", "stimulus").stdout
    assert "poisson" in listed and "Sine current" in listed
