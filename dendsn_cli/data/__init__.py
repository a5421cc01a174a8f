"""Datasets, loaded once and kept resident on the training device.

    split.py      Split (x, y on the device), DataInfo, the validation hold-out
    synthetic.py  SyntheticSpikes (dataset=synthetic)
    images.py     TorchvisionImages (dataset=mnist, fashion_mnist) and the IDX file checks
    events.py     TonicEvents (dataset=shd, nmnist, dvs_gesture)

A dataset class declares what it ``provides`` ("images", "spike_trains" or "event_frames"), which the
config's rules read (`dendsn_cli.config.capabilities`): a user's own class declares it the same way.

Three sources, each a Hydra `_target_` with a `load(device) -> (train, val, test, info)`. ``val`` is the
validation split that model selection (best checkpoint, early stopping) uses, never the test split;
it is None when ``val=0``:

`SyntheticSpikes` (the default, no download): a spike-timing classification task.
Each class c owns a template that gives every input channel n exactly one spike,
at a class-specific random time

    t*[c, n] ~ Uniform{0, ..., T-1}.

A sample of class c is that template, corrupted independently per spike / step:

    t[n]      = clip(t*[c, n] + j[n], 0, T-1),   j[n] ~ Uniform{-jitter, ..., jitter}
    keep[n]   ~ Bernoulli(1 - p_delete)
    x[t, n]   = keep[n] * [t == t[n]]  OR  Bernoulli(noise_rate)      # x: [T, N] in {0, 1}

Because every template has one spike per channel, the per-channel spike count
of a sample (keep[n] + noise) has the same distribution for every class: the
class is in *when* channels fire, not *how often*. A linear read-out of counts
stays at chance; a spiking network that detects coincidences does not.

`TorchvisionImages`: MNIST / Fashion-MNIST through torchvision, as float
images in [0, 1] of shape [N, 1, 28, 28]. Fashion-MNIST is taken from the
Debian package files in /usr/share/datasets/fashion-mnist/ when present.
Before torchvision reads them, the four IDX files (or, where one is absent, its
``.gz`` beside it, which is then decompressed) are checked: magic number, header
dims against the byte count, labels in 0..n_classes-1, as many labels as images;
a damaged file is a `UserError` that names it.

`TonicEvents`: the neuromorphic event datasets SHD, N-MNIST and DVS Gesture, read by tonic from its
folder layout (never downloaded), each recording binned into T frames by tonic's `ToFrame`, neighbouring
channels / pixels summed, and cached as a tensor on first use: float32 time-major samples [N, T, ...]
(see the class).

Validation: the synthetic task draws its own ``val`` samples (after train and test, so those two are
the same with or without it); image datasets hold ``val`` samples (a count, or a fraction of the
training split) out of the training split, chosen by a permutation from ``seed``, before ``n_train``
keeps the first samples of the rest; so do the event datasets.

Row-sequential images (``sequential=rows``, MNIST / Fashion-MNIST): each image becomes a sequence of
its rows, one row per time step,

    x[n, t, :] = image[n, row t, :]      x: [N, 28, 28] = [N, T, C], T = 28 rows of C = 28 pixels

kept as time-major samples (`DataInfo.time_major`, input shape (28,)), so the run's T must equal the
number of rows (a UserError otherwise). The values stay analog pixel intensities in [0, 1]: they
are input currents, for `encoder=direct` (the config refuses encoders that would read them as spikes).

Every split is a `Split` (x, y on the device); `Split.batches` shuffles by
indexing with one random permutation per epoch, no DataLoader.
"""

from .events import EVENT_SOURCES, FRAMES_FORMAT, EventSource, TonicEvents, pool_frames
from .images import (
    DEBIAN_FASHION_MNIST,
    IDX_FILES,
    TorchvisionImages,
    check_idx_header,
    check_labels,
    images_to_split,
    install_debian_fashion_mnist,
    read_idx_file,
    read_idx_gz,
    rows_split,
)
from .split import SEQUENTIAL, DataInfo, Split, hold_out, sequential_kind, val_count
from .synthetic import SyntheticSpikes, balanced_labels, corrupt_templates, spike_templates

__all__ = [
    "DEBIAN_FASHION_MNIST",
    "EVENT_SOURCES",
    "FRAMES_FORMAT",
    "IDX_FILES",
    "SEQUENTIAL",
    "DataInfo",
    "EventSource",
    "Split",
    "SyntheticSpikes",
    "TonicEvents",
    "TorchvisionImages",
    "balanced_labels",
    "check_idx_header",
    "check_labels",
    "corrupt_templates",
    "hold_out",
    "images_to_split",
    "install_debian_fashion_mnist",
    "pool_frames",
    "read_idx_file",
    "read_idx_gz",
    "rows_split",
    "sequential_kind",
    "spike_templates",
    "val_count",
]
