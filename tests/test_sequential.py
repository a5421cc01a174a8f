"""Row-sequential images (dataset.sequential=rows): step t of a sample is row t of its image, on small IDX
files the tests write; T, the encoder and the dataset are checked with one line each; the presets compose."""

import json
from pathlib import Path

import pytest
import torch
from conftest import one_error, run_dendsn
from test_data import write_fake_mnist

from dendsn_cli.data import DataInfo, TorchvisionImages
from dendsn_cli.encoders import Direct
from dendsn_cli.errors import UserError

CPU = torch.device("cpu")


def test_step_t_is_row_t_of_the_image(tmp_path):
    arrays = write_fake_mnist(tmp_path, n_train=12, n_test=6)
    train, val, test, info = TorchvisionImages("mnist", root=str(tmp_path), val=4, sequential="rows", T=28).load(CPU)
    assert info == DataInfo(input_shape=(28,), n_classes=10, time_major=True, name="mnist")
    assert train.x.shape == (8, 28, 28) and val.x.shape == (4, 28, 28) and test.x.shape == (6, 28, 28)
    x, y = next(test.batches(6, shuffle=False))
    x_seq = Direct()(x, 28, time_major=info.time_major)  # [T, B, 28]
    images = torch.from_numpy(arrays["t10k"][0]).float() / 255  # [6, 28, 28]
    assert x_seq.shape == (28, 6, 28)
    for t in range(28):
        assert torch.equal(x_seq[t], images[:, t, :])
    assert y.tolist() == arrays["t10k"][1].tolist()
    static = TorchvisionImages("mnist", root=str(tmp_path), val=4).load(CPU)
    assert torch.equal(static[0].x[:, 0], train.x) and torch.equal(static[1].x[:, 0], val.x)  # same samples


def test_a_run_with_another_T_is_one_line(tmp_path, dendsn_here):
    write_fake_mnist(tmp_path / "data")
    with pytest.raises(UserError) as err:
        TorchvisionImages("mnist", root=str(tmp_path / "data"), val=0, sequential="rows", T=8).load(CPU)
    assert "\n" not in str(err.value) and "dataset.sequential=rows" in str(err.value) and "T=28" in str(err.value)
    p = dendsn_here(
        "train",
        "dataset=mnist",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.val=0",
        "dataset.sequential=rows",
        "progress=false",
    )
    one_error(p, "T=8", "dataset.sequential=rows", "set T=28")


@pytest.mark.parametrize(
    "args,fragments",
    [
        (
            ["dataset=mnist", "dataset.sequential=rows", "T=28", "encoder=poisson"],
            ["encoder=poisson", "dataset.sequential=rows", "encoder=direct"],
        ),
        (
            ["dataset=fashion_mnist", "dataset.sequential=rows", "T=28", "encoder=latency"],
            ["encoder=latency", "encoder=direct"],
        ),
        (["dataset.sequential=rows"], ["dataset.sequential=rows", "dataset=mnist"]),  # synthetic
        (["dataset=mnist", "dataset.sequential=columns"], ["dataset.sequential='columns'", "rows"]),
    ],
)
def test_what_does_not_apply_is_one_line(args, fragments, dendsn_here):
    one_error(dendsn_here("train", *args, "progress=false"), *fragments)


def test_presets_compose_to_row_sequences():
    from dendsn_cli.config import compose

    cfg = compose(["experiment=fmnist_rows_lif"])
    assert (cfg.T, cfg.dataset.sequential, cfg.dataset.T, cfg.network.recurrent) == (28, "rows", 28, False)
    assert cfg.neuron._target_ == "dendsn.neurons.LIF"
    try:
        cfg = compose(["experiment=fmnist_rows_alif"])
    except UserError as e:  # neuron=alif arrives with the ALIF model
        assert "alif" in str(e)
        cfg = compose(["experiment=fmnist_rows_alif", "neuron=lif"])
    assert (cfg.T, cfg.dataset.sequential, cfg.network.recurrent) == (28, "rows", True)


FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.exists(), reason="Debian package dataset-fashion-mnist is not installed")
def test_recurrent_adaptive_network_beats_the_feed_forward_baseline_by_5_points(tmp_path):
    accs = {}
    for preset in ("fmnist_rows_lif", "fmnist_rows_alif"):
        run_dendsn(
            "train",
            f"experiment={preset}",
            f"dataset.root={tmp_path / 'data'}",
            "progress=false",
            f"hydra.run.dir={preset}",
            cwd=tmp_path,
            check=True,
            timeout=1800,
        )
        accs[preset] = json.loads((tmp_path / preset / "metrics.json").read_text())["final"]["test_acc"]
    assert accs["fmnist_rows_alif"] >= accs["fmnist_rows_lif"] + 0.05, accs
