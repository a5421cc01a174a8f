"""Issue 10: runs that learn from the first epoch, a validation split that (alone) chooses the best
epoch, hyperparameters and pictures a sweep can be compared by, the terminal a user meets."""

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
import torch
from conftest import DENDSN, TINY, run_dendsn, run_here


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def events(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    ea.Reload()
    return ea


# ------------------------------------------------------------------ 1. learning from the first batch
@pytest.mark.parametrize("wiring", ["kto1", "tree"])
def test_the_default_coupling_is_stable_for_every_wiring_and_an_unstable_one_is_refused(wiring, tmp_path):
    from dendsn import dendritic
    from dendsn import wiring as W
    from dendsn.compartments import Passive
    from dendsn.dendrite import auto_coupling

    w = {"kto1": W.KTo1(k=3, n_output=2), "tree": W.Tree([-1, 0, 0, 1, 1, 2, 2])}[wiring]
    comp = Passive(tau_d=2.0, decay_input=False)  # the runner's compartments
    cell = dendritic.DendLIF(w, compartment=comp)  # coupling_g=None: the default
    assert cell.dendrite.growth() < 1.0
    assert cell.dendrite.g.item() == pytest.approx(auto_coupling(w, comp))
    assert dendritic.DendLIF(w, compartment=comp, coupling_g=1.0).dendrite.growth() > 1.0  # g = 1 explodes
    limit = dendritic.DendLIF(w, compartment=comp, coupling_g=1.0).dendrite.stable_coupling_limit()
    assert dendritic.DendLIF(w, compartment=comp, coupling_g=0.99 * limit).dendrite.growth() < 1.0
    assert dendritic.DendLIF(w, compartment=comp, coupling_g=1.01 * limit).dendrite.growth() > 1.0
    p = run_here("train", *TINY, f"wiring={wiring}", "neuron.coupling_g=1.0", cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("dendsn: error: neuron.coupling_g=1.0 makes the") and "unstable" in line
    assert "neuron.coupling_g=null" in line


def test_init_rate_scales_each_layer_and_its_learning_rate(tmp_path):
    p = run_here("train", *TINY, "epochs=1", "hydra.run.dir=run", cwd=tmp_path, check=True)
    m = re.search(
        r"^dendsn: init_rate=0\.01: layer1 [\d.]+->([\d.]+) \(x([\d.]+)\), readout [\d.]+->([\d.]+) \(x([\d.]+)\)$",
        p.stderr,
        re.M,
    )
    assert m, p.stderr
    assert 0.005 < float(m.group(1)) < 0.02 and 0.0004 < float(m.group(3)) < 0.003
    ck = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    scales = sorted(
        set(ck["rule"]["lr_scales"])
    )  # the hidden layer's factor (the line prints 3 digits); the read-out's rate stays
    assert [float(f"{c:.3g}") for c in scales] == sorted([float(m.group(2)), 1.0])
    groups = ck["rule"]["optimizer"]["param_groups"]
    assert sorted(g["lr_scale"] for g in groups) == scales
    assert "init_rate=0.01: layer1" in (tmp_path / "run/train.log").read_text()


def test_scale_lr_multiplies_each_group_and_a_resumed_optimizer_gets_the_same_groups():
    from dendsn_cli.learning import BPTT

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    adam = lambda params: torch.optim.Adam(params, lr=0.01)
    rule = BPTT()
    rule.setup(model, adam, 10, "cosine")
    rule.scale_lr({p: 4.0 for p in model[0].parameters()})
    lrs = sorted(g["lr"] for g in rule.optimizer.param_groups)
    assert lrs == pytest.approx([0.01, 0.04]) and rule.lr() == pytest.approx(0.01)
    assert rule.scheduler.base_lrs and sorted(rule.scheduler.base_lrs) == pytest.approx([0.01, 0.04])
    fresh = BPTT()
    fresh.setup(model, adam, 10, "cosine")
    fresh.load_state_dict(rule.state_dict())
    assert sorted(g["lr"] for g in fresh.optimizer.param_groups) == pytest.approx([0.01, 0.04])


def test_default_run_learns_in_the_first_epoch(dendsn_here, tmp_path):
    """The default network fires from the first batch: one epoch of the default task is far above
    chance (before the fix it was exactly 10.00%, every layer silent)."""
    dendsn_here("train", "epochs=1", "progress=false", "hydra.run.dir=run", check=True)
    m = metrics(tmp_path / "run")
    assert m["final"]["test_acc"] >= 0.6, m["final"]
    assert m["history"][0]["val_acc"] >= 0.6


def test_a_silent_and_a_saturated_layer_are_warned_about_after_the_first_epoch(dendsn_here, tmp_path):
    p = dendsn_here(
        "train", *TINY, "epochs=1", "init_rate=null", "neuron.v_threshold=1000", "hydra.run.dir=silent", check=True
    )
    warn = [ln for ln in p.stderr.splitlines() if ln.startswith("dendsn: warning: layer1 is silent")]
    assert len(warn) == 1 and "try init_rate=" in warn[0], p.stderr
    assert "layer1 is silent after the first epoch" in (tmp_path / "silent/train.log").read_text()
    from dendsn_cli.train import rate_warnings

    lines = rate_warnings({"rate/layer1": 0.95, "rate/layer2": 0.2, "rate/readout": 0.0})
    assert len(lines) == 2 and lines[0].startswith("layer1 is saturated after the first epoch (mean rate 0.95")
    assert lines[1].startswith("readout is silent")
    p = dendsn_here("train", *TINY, "epochs=1", "hydra.run.dir=fine", check=True)
    assert "warning" not in p.stderr


# ------------------------------------------------------------------ 2. validation split
ADVERSARIAL = '''
import torch
from dendsn_cli.data import SyntheticSpikes, Split

class WrongTest(SyntheticSpikes):
    """The synthetic task with its test labels shifted by one class: the better a model gets (on
    validation), the worse its test accuracy. Selecting on test data would pick the worst model."""
    def load(self, device):
        train, val, test, info = super().load(device)
        return train, val, Split(test.x, (test.y + 1) % self.n_classes), info
'''


def test_best_epoch_is_chosen_on_validation_never_on_test_data(dendsn_here, tmp_path):
    (tmp_path / "adversarial.py").write_text(ADVERSARIAL)
    args = [a for a in TINY if not a.startswith(("dataset.n_train", "batch_size"))]
    dendsn_here(
        "train",
        *args,
        "dataset.n_train=1000",
        "batch_size=25",
        "epochs=3",
        "dataset._target_=adversarial.WrongTest",
        "hydra.run.dir=run",
        env={"PYTHONPATH": str(tmp_path)},
        check=True,
    )
    m = metrics(tmp_path / "run")
    hist = m["history"]
    val = [h["val_acc"] for h in hist]
    test = [h["test_acc"] for h in hist]
    best_val_epoch = val.index(max(val)) + 1
    assert m["selected_on"] == "val_acc" and m["best"]["epoch"] == best_val_epoch
    assert test.index(max(test)) + 1 != best_val_epoch  # test data would pick another epoch
    assert m["best"]["test_acc"] == test[best_val_epoch - 1] and m["best"]["val_acc"] == max(val)
    best = torch.load(tmp_path / "run/checkpoints/best.pt", weights_only=True)
    assert best["epoch"] == best_val_epoch


def test_validation_split_is_held_out_deterministically_and_can_be_turned_off(tmp_path):
    from test_data import write_fake_mnist

    from dendsn_cli.data import SyntheticSpikes, TorchvisionImages

    arrays = write_fake_mnist(tmp_path, n_train=40, n_test=10)
    cpu = torch.device("cpu")
    train, val, test, _ = TorchvisionImages("mnist", root=str(tmp_path), val=0.25, seed=3).load(cpu)
    train2, val2, _, _ = TorchvisionImages("mnist", root=str(tmp_path), val=10, seed=3).load(cpu)
    assert len(val) == 10 and len(train) == 30 and torch.equal(val.x, val2.x) and torch.equal(train.x, train2.x)
    _, other, _, _ = TorchvisionImages("mnist", root=str(tmp_path), val=10, seed=4).load(cpu)
    assert not torch.equal(val.x, other.x)
    rows = {tuple(r.flatten().tolist()) for r in torch.cat([train.x, val.x])}
    assert len(rows) == 40  # disjoint, and together the whole split
    _, none, _, _ = TorchvisionImages("mnist", root=str(tmp_path), val=0).load(cpu)
    assert none is None
    a = SyntheticSpikes(n_train=50, n_test=20, val=0).load(cpu)
    b = SyntheticSpikes(n_train=50, n_test=20, val=30).load(cpu)
    assert a[1] is None and len(b[1]) == 30
    assert torch.equal(a[0].x, b[0].x) and torch.equal(a[2].x, b[2].x)  # train and test do not change
    from dendsn_cli.errors import UserError

    with pytest.raises(UserError, match=r"dataset\.val=40 holds out 40 of the 40"):
        TorchvisionImages("mnist", root=str(tmp_path), val=40).load(cpu)
    with pytest.raises(UserError, match=r"dataset\.val=1\.5 is invalid"):
        TorchvisionImages("mnist", root=str(tmp_path), val=1.5)
    del arrays


def test_without_validation_the_best_epoch_is_chosen_on_training_accuracy(dendsn_here, tmp_path):
    dendsn_here("train", *TINY, "dataset.val=0", "hydra.run.dir=run", check=True)
    m = metrics(tmp_path / "run")
    assert m["selected_on"] == "train_acc" and "val_acc" not in m["final"]
    train = [h["train_acc"] for h in m["history"]]
    assert m["best"]["epoch"] == train.index(max(train)) + 1


def test_early_stopping_on_validation(dendsn_here, tmp_path):
    p = dendsn_here("train", *TINY, "epochs=40", "early_stop.patience=1", "hydra.run.dir=run", check=True)
    m = metrics(tmp_path / "run")
    n = m["epochs_completed"]
    assert m["early_stopped"] and n < 40
    val = [h["val_acc"] for h in m["history"]]
    assert val[-1] <= max(val[:-1])  # the last epoch did not improve
    assert f"early stop after epoch {n}: val acc has not improved for 1 epoch" in p.stderr
    assert one_line_error(dendsn_here("train", "early_stop.patience=0")).endswith(
        "it must be >= 1 (epochs), or null for no early stopping"
    )


def one_line_error(p) -> str:
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
    return p.stderr.strip().splitlines()[-1]


# ------------------------------------------------------------------ 3. sweeps: hparams with their types
def test_hparams_carry_the_swept_keys_with_their_types_and_val_test_metrics(dendsn_here, tmp_path):
    from tensorboard.plugins.hparams import metadata

    dendsn_here(
        "train",
        "-m",
        *TINY,
        "epochs=1",
        "neuron=lif,dend_lif",
        "init_lr_scale=false",
        "hydra.sweep.dir=sweep",
        check=True,
    )
    jobs = sorted(d for d in (tmp_path / "sweep").iterdir() if (d / "metrics.json").exists())
    assert len(jobs) == 2
    for job, neuron in zip(jobs, ("lif", "dend_lif")):
        ea = events(job)
        content = ea.PluginTagToContent("hparams")
        start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
        assert start.hparams["neuron"].string_value == neuron
        assert start.hparams["init_lr_scale"].WhichOneof("kind") == "bool_value"
        assert start.hparams["init_lr_scale"].bool_value is False
        assert start.hparams["epochs"].number_value == 1 and start.hparams["optim.lr"].number_value == 0.005
        assert len(start.hparams) < 22  # not every default key (11 groups + seed + swept)
        exp = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
        names = [h.name for h in exp.hparam_infos]
        assert [h.differs for h in exp.hparam_infos][:3] == [True, True, True]
        assert "neuron" in names[: len([h for h in exp.hparam_infos if h.differs])]
        metrics_ = {m.name.tag for m in exp.metric_infos}
        assert {"hparam/val_acc", "hparam/test_acc", "hparam/final_test_acc"} <= metrics_
        scalars = ea.Tags()["scalars"]
        assert "hparam/val_acc" in scalars and "val/acc" in scalars


# ------------------------------------------------------------------ 4. pictures
def test_pictures_are_readable_figures_with_one_name_per_layer(dendsn_here, tmp_path):
    dendsn_here(
        "train", *TINY, "epochs=2", "logger.log_every_n_steps=2", "logger.rasters=true", "hydra.run.dir=run", check=True
    )
    ea = events(tmp_path / "run")
    tags = ea.Tags()
    for layer in ("layer1", "readout"):
        for kind in ("raster", "traces", "rates"):
            tag = f"{kind}/{layer}"
            assert tag in tags["images"], (tag, tags["images"])
            img = ea.Images(tag)[-1]
            assert img.width >= 200 and img.height >= 200, (tag, img.width, img.height)
        assert f"rate/{layer}" in tags["scalars"] and f"never_fired/{layer}" in tags["scalars"]
        assert f"grad_norm/{layer}" in tags["scalars"]
        assert f"weights/{layer}/weight" in tags["histograms"]
    assert "confusion/validation" in tags["images"]
    assert [e.step for e in ea.Images("raster/layer1")] == [1, 2]  # first and last epoch
    assert [e.step for e in ea.Scalars("train/batch_loss")] == [2, 4, 6, 8, 10, 12]  # 6 batches an epoch
    assert all(e.value > 0 for e in ea.Scalars("grad_norm/layer1"))
    text = ea.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "${" not in text and "network.hidden=[48]" in text
    perf = ea.Scalars("perf/samples_per_s")[-1].value
    assert perf > 0


def test_traces_of_a_dendritic_layer_show_every_compartment(tmp_path):
    """The monitor keeps soma and compartment potentials of one evaluation batch, [T, n] and [T, n, K]."""
    from dendsn_cli import train as tr
    from dendsn_cli.config import compose

    cfg = compose([*TINY, "wiring=kto1"])
    parts = tr.build(cfg, torch.device("cpu"))
    mon = tr.Monitor(parts.layers)
    tr.evaluate(parts, cfg, parts.val, mon, record=True)
    mon.stop()
    t = mon.traces["layer1"]
    K = 8  # kto1: 3 x 2 inputs + 2 outputs
    assert t["v"].shape == (12, 4) and t["v_dend"].shape == (12, 4, K) and t["spikes"].shape == (12, 4)
    assert mon.rasters["layer1"].shape == (12, 3, 48)
    for name in ("layer1", "readout"):  # dendritic and point somas alike:
        t = mon.traces[name]  # the potential before the reset, which
        fired = t["spikes"] > 0  # crosses the threshold where it fires
        assert torch.all(t["v"][fired] >= t["v_threshold"]) and torch.all(t["v"][~fired] < t["v_threshold"])
    assert not any("store_seq" in vars(m) for _, m in parts.layers)  # back to the fast path


def test_local_rule_logs_the_rate_it_applies(dendsn_here, tmp_path):
    dendsn_here(
        "train",
        *TINY,
        "epochs=2",
        "learning=stdp",
        "lr_schedule=cosine",
        "learning.local_epochs=null",
        "hydra.run.dir=run",
        check=True,
    )
    lrs = [h["lr"] for h in metrics(tmp_path / "run")["history"]]
    assert lrs == pytest.approx([0.0025, 0.0], abs=1e-12)  # a_plus = 0.005 under the cosine factor, at each epoch's end


# ------------------------------------------------------------------ 5. terminal
def test_start_line_summary_and_singular_epoch(dendsn_here, tmp_path):
    p = dendsn_here("train", *TINY, "epochs=1", "hydra.run.dir=run", check=True)
    first = p.stderr.splitlines()[0]
    assert re.fullmatch(
        r"dendsn: run \| cpu \| [\d,]+ parameters \| 300 train / 100 val / 100 test \| "
        r"watch: tensorboard --logdir run",
        first,
    ), first
    assert re.search(
        r"^dendsn: 1 epoch in [\d.]+s \| test acc [\d.]+% \(best val acc [\d.]+% @ epoch 1, test acc there",
        p.stdout,
        re.M,
    ), p.stdout


def test_progress_bar_on_a_terminal_that_reports_zero_columns(tmp_path):
    """A pty whose size is 0 x 0 (some CI consoles): the bar still draws, with loss and accuracy."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    args = [a for a in TINY if a not in ("progress=false", "batch_size=50")]
    proc = subprocess.Popen(
        [DENDSN, "train", *args, "batch_size=10", "epochs=1", "hydra.run.dir=run"],
        cwd=tmp_path,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=300)
    os.close(master)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "Traceback" not in text and re.search(r"epoch 1/1: .*loss=[\d.]+, acc=[\d.]+", text), text


@pytest.mark.slow  # the fast suite stops and resumes on SIGHUP in test_resume_exact.py
def test_sighup_stops_like_sigterm_and_the_run_resumes(tmp_path):
    args = [
        "train",
        "dataset.n_train=1500",
        "dataset.n_test=100",
        "dataset.val=100",
        "T=12",
        "network.hidden=[48]",
        "batch_size=10",
        "epochs=2",
        "progress=false",
    ]
    proc = subprocess.Popen(
        [DENDSN, *args, "hydra.run.dir=run"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 300
    while not (tmp_path / "run/checkpoints/last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGHUP)  # the terminal closed, in epoch 2
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert metrics(tmp_path / "run")["status"] == "interrupted"
    run_dendsn("train", "resume=run", cwd=tmp_path, check=True)
    assert metrics(tmp_path / "run")["status"] == "completed"
