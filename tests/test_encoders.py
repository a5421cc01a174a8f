"""Encoders: exact outputs on tiny hand-made inputs."""

import pytest
import torch

from dendsn_cli.encoders import Direct, Latency, Poisson, random_int16
from dendsn_cli.errors import UserError


def spike_train_batch(B=2, T=4, C=3):
    return (torch.rand(B, T, C, generator=torch.Generator().manual_seed(0)) < 0.5).float()  # [B, T, C]


# --------------------------------------------------------------------------- Direct


def test_direct_repeats_static_input_without_copy():
    x = torch.tensor([[0.0, 0.5], [1.0, 0.25]])  # [B=2, 2]
    out = Direct()(x, 3)
    assert out.shape == (3, 2, 2)
    assert all(torch.equal(out[t], x) for t in range(3))
    assert out.stride(0) == 0 and out.data_ptr() == x.data_ptr()  # expand, no copy


def test_direct_passes_time_major_spike_trains_through():
    x = spike_train_batch()
    out = Direct()(x, 4, time_major=True)
    assert out.shape == (4, 2, 3) and torch.equal(out, x.transpose(0, 1))


def test_time_major_T_mismatch_names_T():
    with pytest.raises(UserError, match=r"T=5 .* 4 time steps"):
        Direct()(spike_train_batch(T=4), 5, time_major=True)


@pytest.mark.parametrize("T", [0, -1, 2.0])
def test_bad_T_is_a_user_error(T):
    with pytest.raises(UserError, match="T="):
        Direct()(torch.zeros(1, 2), T)


# --------------------------------------------------------------------------- Poisson


def test_poisson_extremes_are_deterministic():
    x = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    out = Poisson()(x, 50)
    assert out.shape == (50, 1, 4) and out.dtype == torch.float32
    assert torch.all(out[:, 0, [0, 2]] == 0) and torch.all(out[:, 0, [1, 3]] == 1)


def test_poisson_rate_matches_probability():
    torch.manual_seed(0)
    x = torch.tensor([0.1, 0.3, 0.6]).repeat(2000, 1)  # [B=2000, 3]
    out = Poisson(rate_scale=0.5)(x, 20)  # p = 0.05, 0.15, 0.3
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    rate = out.mean((0, 1))
    assert torch.allclose(rate, torch.tensor([0.05, 0.15, 0.3]), atol=0.005)


def test_poisson_clamps_probability():
    out = Poisson(rate_scale=3.0)(torch.tensor([[0.5, -1.0]]), 10)  # p = clamp(1.5) = 1, clamp(-3) = 0
    assert torch.all(out[:, 0, 0] == 1) and torch.all(out[:, 0, 1] == 0)


def test_poisson_follows_global_rng():
    x = torch.full((4, 5), 0.5)
    torch.manual_seed(1)
    a = Poisson()(x, 6)
    torch.manual_seed(1)
    assert torch.equal(a, Poisson()(x, 6))


def test_poisson_passes_spike_trains_through():
    x = spike_train_batch()
    assert torch.equal(Poisson(rate_scale=0.1)(x, 4, time_major=True), x.transpose(0, 1))


@pytest.mark.parametrize("rate_scale", [0, -1.0, float("inf")])
def test_poisson_rejects_bad_rate_scale(rate_scale):
    with pytest.raises(UserError, match=r"encoder\.rate_scale="):
        Poisson(rate_scale=rate_scale)


# --------------------------------------------------------------------------- Latency


def test_latency_exact_spike_times():
    # T = 5: t_s = round((1 - x) * 4); x = 1 -> 0, 0.75 -> 1, 0.5 -> 2, 0.3 -> round(2.8) = 3; 0.2, 0 silent
    x = torch.tensor([[1.0, 0.75, 0.5, 0.3, 0.2, 0.0]])  # [B=1, 6]
    out = Latency(threshold=0.2)(x, 5)  # [5, 1, 6]
    expected = torch.zeros(5, 1, 6)
    for channel, t in enumerate([0, 1, 2, 3]):
        expected[t, 0, channel] = 1.0
    assert torch.equal(out, expected)


def test_latency_one_spike_per_input_on_images():
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))  # [B, 1, H, W]
    out = Latency(threshold=0.0)(x, 8)
    assert out.shape == (8, 3, 1, 4, 4)
    assert torch.equal(out.sum(0), (x > 0).float())
    assert torch.equal(out.argmax(0), torch.round((1 - x) * 7).long())


def test_latency_log_mapping():
    # t_s = round(ln(x) / ln(0.1) * 9): x = 1 -> 0, 0.1 ** (1/3) -> 3, 0.1 ** (2/3) -> 6, 0.1 silent
    x = torch.tensor([[1.0, 0.1 ** (1 / 3), 0.1 ** (2 / 3), 0.1]])
    out = Latency(threshold=0.1, linear=False)(x, 10)
    assert out[:, 0, :3].argmax(0).tolist() == [0, 3, 6]
    assert out.sum().item() == 3


def test_latency_refuses_spike_trains():
    with pytest.raises(UserError, match="encoder=direct"):
        Latency()(spike_train_batch(), 4, time_major=True)


@pytest.mark.parametrize("kwargs", [dict(threshold=1.0), dict(threshold=-0.1), dict(threshold=0.0, linear=False)])
def test_latency_rejects_bad_threshold(kwargs):
    with pytest.raises(UserError, match=r"encoder\.threshold="):
        Latency(**kwargs)


def test_random_int16_is_uniform_and_independent():
    torch.manual_seed(0)
    r = random_int16((200_003,), torch.device("cpu")).long()  # odd length: a partial last word
    assert r.shape == (200_003,) and r.min() >= -32768 and r.max() <= 32767
    bits = torch.stack([(r >> k) & 1 for k in range(16)]).float()  # [16, n]: every bit is a fair coin
    assert torch.allclose(bits.mean(1), torch.full((16,), 0.5), atol=0.006)
    lag = torch.corrcoef(torch.stack([r[:-1], r[1:]]).float())[0, 1]  # neighbours share a 64-bit word
    assert abs(lag) < 0.01


def test_poisson_rate_is_exact_on_the_2_pow_16_grid():
    # p = q / 2^16 spikes with probability q / 2^16; near 0 and 1 the rounding stays within 2^-16
    torch.manual_seed(0)
    p = torch.tensor([1 / 65536, 0.001, 0.25, 0.999, 65534 / 65536]).repeat(4000, 1)  # [B=4000, 5]
    rate = Poisson()(p, 50).mean((0, 1))  # 200,000 draws each
    expected = torch.tensor(
        [1 / 65536, round(0.001 * 65536) / 65536, 0.25, round(0.999 * 65536) / 65536, 65534 / 65536]
    )
    sd = (expected * (1 - expected) / 200_000).sqrt()
    assert torch.all((rate - expected).abs() <= 5 * sd + 1e-6), (rate, expected)
