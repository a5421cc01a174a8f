"""`SyntheticSpikes` (`dataset=synthetic`, the default, no download): a spike-timing classification task
(see the package docstring for the templates and their corruption)."""

from __future__ import annotations

import numpy as np
import torch

from dendsn_cli.config.checks import is_int, is_probability, require
from dendsn_cli.errors import UserError

from .split import DataInfo, Split, sequential_kind, val_count


def spike_templates(rng: np.random.Generator, n_classes: int, n_channels: int, T: int) -> np.ndarray:
    """t*[c, n]: the one spike time of channel n in the template of class c. [C, N] int64."""
    return rng.integers(0, T, size=(n_classes, n_channels))


def corrupt_templates(
    rng: np.random.Generator,
    templates: np.ndarray,  # [C, N] spike times
    labels: np.ndarray,  # [M] class of each sample
    T: int,
    jitter: int,
    p_delete: float,
    noise_rate: float,
) -> np.ndarray:
    """Draw noisy samples of the given classes' templates. Returns x: [M, T, N] float32 in {0, 1}.

    Jitter moves each spike by j ~ Uniform{-jitter..jitter} (clipped to [0, T-1]),
    deletion drops it with prob p_delete, noise adds Bernoulli(noise_rate) spikes
    per channel per step (OR-ed with the template spikes).
    """
    m, n = labels.shape[0], templates.shape[1]
    times = templates[labels]  # [M, N]
    times = np.clip(times + rng.integers(-jitter, jitter + 1, size=(m, n)), 0, T - 1)
    keep = rng.random((m, n)) >= p_delete  # [M, N]
    x = np.zeros((m, T, n), dtype=np.float32)  # [M, T, N]
    sample_idx, channel_idx = np.nonzero(keep)
    x[sample_idx, times[sample_idx, channel_idx], channel_idx] = 1.0
    noise = rng.random((m, T, n)) < noise_rate  # [M, T, N]
    x[noise] = 1.0
    return x


def balanced_labels(rng: np.random.Generator, n_samples: int, n_classes: int) -> np.ndarray:
    """Labels 0..C-1 in equal shares (up to one), in random order. [M] int64."""
    return rng.permutation(np.arange(n_samples) % n_classes).astype(np.int64)


class SyntheticSpikes:
    """Spike-timing classification task (see the package docstring); `dataset=synthetic`.

    Deterministic from `seed`: templates, then the train split, then the test
    split are drawn from one numpy Generator, so the same seed gives the same
    tensors bit for bit, and train / test share templates but not noise.
    """

    provides = "spike_trains"  # time-major spikes [N, T, C] (declared for the config's rules)

    def __init__(
        self,
        n_classes: int = 10,
        n_channels: int = 100,
        T: int = 20,
        jitter: int = 1,
        p_delete: float = 0.2,
        noise_rate: float = 0.05,
        n_train: int = 4000,
        n_test: int = 1000,
        val: float = 1000,
        seed: int = 0,
        sequential: str | None = None,
    ):
        if sequential_kind(sequential) is not None:
            raise UserError(
                f"dataset.sequential={sequential} applies to image datasets (dataset=mnist or "
                "dataset=fashion_mnist): the synthetic task is a spike sequence already; drop the override"
            )
        require(is_int(n_classes) and n_classes >= 2, "dataset.n_classes", n_classes, "an integer >= 2")
        require(is_int(n_channels) and n_channels >= 1, "dataset.n_channels", n_channels, "an integer >= 1")
        require(is_int(T) and T >= 1, "dataset.T", T, "an integer >= 1")
        require(is_int(jitter) and jitter >= 0, "dataset.jitter", jitter, "an integer >= 0 (time steps)")
        require(is_probability(p_delete), "dataset.p_delete", p_delete, "a probability in [0, 1]")
        require(
            is_probability(noise_rate),
            "dataset.noise_rate",
            noise_rate,
            "a spike probability per channel per step, in [0, 1]",
        )
        require(is_int(n_train) and n_train >= 1, "dataset.n_train", n_train, "an integer >= 1")
        require(is_int(n_test) and n_test >= 1, "dataset.n_test", n_test, "an integer >= 1")
        require(is_int(seed) and seed >= 0, "dataset.seed", seed, "an integer >= 0")
        self.n_classes, self.n_channels, self.T = n_classes, n_channels, T
        self.jitter, self.p_delete, self.noise_rate = jitter, float(p_delete), float(noise_rate)
        self.n_train, self.n_test, self.seed = n_train, n_test, seed
        self.n_val = val_count(val, n_train)

    def _split(self, rng: np.random.Generator, templates: np.ndarray, n_samples: int, device) -> Split:
        y = balanced_labels(rng, n_samples, self.n_classes)
        x = corrupt_templates(rng, templates, y, self.T, self.jitter, self.p_delete, self.noise_rate)
        return Split(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))

    def load(self, device: torch.device) -> tuple[Split, Split | None, Split, DataInfo]:
        rng = np.random.default_rng(self.seed)
        templates = spike_templates(rng, self.n_classes, self.n_channels, self.T)
        train = self._split(rng, templates, self.n_train, device)  # x: [n_train, T, C]
        test = self._split(rng, templates, self.n_test, device)  # x: [n_test, T, C]
        val = self._split(rng, templates, self.n_val, device) if self.n_val else None  # drawn last
        info = DataInfo(input_shape=(self.n_channels,), n_classes=self.n_classes, time_major=True, name="synthetic")
        return train, val, test, info
