"""The `dendsn` command line, end to end: real subprocesses, real files, tiny data."""

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import DENDSN, TINY, run_dendsn
from test_data import write_fake_mnist


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def one_error_line(p) -> str:
    """A user mistake: non-zero exit, one error line (the last on stderr, after any progress), no traceback."""
    assert p.returncode != 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    assert len(errors) == 1 and lines[-1] == errors[0], p.stderr
    assert errors[0].startswith("dendsn: error: ")
    return errors[0]


# ------------------------------------------------------------------ 1. set up and run the default
def test_default_train_reaches_90_percent_on_the_synthetic_task(dendsn_here, tmp_path):
    p = dendsn_here("train", "progress=false", "hydra.run.dir=run", check=True)
    m = metrics(tmp_path / "run")
    assert m["status"] == "completed" and m["epochs_completed"] == 10
    assert m["final"]["test_acc"] >= 0.90, m["final"]
    assert re.search(r"dendsn: 10 epochs in [\d.]+s \| test acc [\d.]+%", p.stdout)


# ------------------------------------------------------------------ 2. overrides, --help, --cfg job
def test_help_lists_groups_and_options(dendsn_here):
    p = dendsn_here("train", "--help", check=True)
    for line in ("learning: bptt*", "optim: adabelief, adam*, sgd"):
        assert line in p.stdout
    for pattern in (
        r"dataset: .*\bfashion_mnist, mnist\b.*\bsynthetic\*",
        r"encoder: .*\bdirect\*.*\blatency\b.*\bpoisson\b",
        r"network: .*\bconv\b.*\bmlp\*",
        r"neuron: .*\blif\b.*\bplif\b",
        r"readout: .*\bcounts\*.*\bfirst_spike\b.*\bmembrane_final\b",
    ):
        assert re.search(pattern, p.stdout), pattern
    # one line per root key, with what it does and its default
    assert re.search(r"^  init_rate +before training, scale each hidden layer.*\(default: 0\.01\)$", p.stdout, re.M)
    assert re.search(r"^  early_stop\.patience +stop when the validation accuracy .*\(default: null\)$", p.stdout, re.M)
    assert re.search(r"^  epochs +passes over the training split \(default: 10\)$", p.stdout, re.M)


def test_cfg_job_prints_the_composed_config_with_overrides(dendsn_here):
    p = dendsn_here("train", "--cfg", "job", "neuron=if", "epochs=3", "encoder=poisson", check=True)
    assert "_target_: dendsn.neurons.IF" in p.stdout
    assert "_target_: dendsn_cli.encoders.Poisson" in p.stdout
    assert re.search(r"^epochs: 3$", p.stdout, re.M)


def test_run_dir_holds_config_checkpoints_metrics_and_events(dendsn_here, tmp_path):
    dendsn_here("train", *TINY, "neuron=plif", "hydra.run.dir=run", check=True)
    run = tmp_path / "run"
    assert "dendsn.neurons.PLIF" in (run / ".hydra" / "config.yaml").read_text()
    for f in ("checkpoints/last.pt", "checkpoints/best.pt", "metrics.json"):
        assert (run / f).is_file(), f
    assert list(run.glob("events.out.tfevents.*"))
    m = metrics(run)
    assert [h["epoch"] for h in m["history"]] == [1, 2]
    assert m["best"]["val_acc"] == max(h["val_acc"] for h in m["history"])  # chosen on validation
    assert not list(run.glob("checkpoints/.*tmp*"))  # atomic writes leave no temp files
    log = (run / "train.log").read_text()
    assert "training on cpu" in log and "epoch 1/2: train loss" in log and "epoch 2/2: train loss" in log
    assert "completed: 2 epochs in" in log


def test_default_outputs_dir_layout(dendsn_here, tmp_path):
    dendsn_here("train", *TINY, "epochs=1", check=True)
    runs = list((tmp_path / "outputs").glob("*/*/metrics.json"))
    assert len(runs) == 1 and re.match(r"\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d", "/".join(runs[0].parent.parts[-2:]))


# ------------------------------------------------------------------ 3. sweeps
def test_multirun_gives_every_job_its_dir_events_and_metrics(dendsn_here, tmp_path):
    p = dendsn_here("train", "-m", *TINY, "epochs=1", "neuron=lif,if", "hydra.sweep.dir=sweep", check=True)
    for job in ("0_neuron=lif", "1_neuron=if"):  # a job's dir (its TensorBoard run) says what it is
        d = tmp_path / "sweep" / job
        assert metrics(d)["status"] == "completed"
        assert list(d.glob("events.out.tfevents.*"))
    assert "dendsn.neurons.IF" in (tmp_path / "sweep" / "1_neuron=if" / ".hydra" / "config.yaml").read_text()
    assert "2 job(s) completed, 0 failed" in p.stderr


def test_failed_job_is_reported_and_the_others_keep_their_results(dendsn_here, tmp_path):
    p = dendsn_here("train", "-m", *TINY, "epochs=1", "neuron.tau=2.0,0.5", "hydra.sweep.dir=sweep")
    assert p.returncode == 1
    assert metrics(tmp_path / "sweep" / "0_neuron.tau=2.0")["status"] == "completed"
    assert "tau must be > 1" in (tmp_path / "sweep" / "1_neuron.tau=0.5" / "error.txt").read_text()
    assert "1 job(s) completed, 1 failed" in p.stderr
    assert "Traceback" not in p.stderr


# ------------------------------------------------------------------ 4. eval
def test_eval_reproduces_the_final_test_accuracy(dendsn_here, tmp_path):
    dendsn_here("train", *TINY, "hydra.run.dir=run", check=True)
    final = metrics(tmp_path / "run")["final"]
    for target in ("run/checkpoints/last.pt", "run"):
        p = dendsn_here("eval", f"ckpt={target}", check=True)
        m = re.search(r"test acc ([\d.]+)% \| test loss ([\d.]+)", p.stdout)
        assert m, p.stdout
        assert float(m.group(1)) == pytest.approx(100 * final["test_acc"], abs=0.006)
        assert float(m.group(2)) == pytest.approx(final["test_loss"], abs=1e-4)


def test_eval_of_a_checkpoint_from_another_model_is_one_line(dendsn_here, tmp_path):
    dendsn_here("train", *TINY, "epochs=1", "hydra.run.dir=run", check=True)
    line = one_error_line(dendsn_here("eval", "ckpt=run", "network.hidden=[64]"))
    assert "holds a different model" in line


# ------------------------------------------------------------------ 5. list
def test_list_prints_groups_options_and_descriptions(dendsn_here):
    p = dendsn_here("list", check=True)
    for group in ("dataset:", "encoder:", "network:", "neuron:", "neuron/soma:", "learning:", "optim:", "logger:"):
        assert group in p.stdout
    # a soma option reuses a point neuron's file, and its description
    assert re.search(r"^neuron/soma:\n(    .*\n)*?    lif\s+Point leaky integrate-and-fire", p.stdout, re.M)
    p = dendsn_here("list", "neuron", check=True)
    assert re.search(r"^  \* dend_lif\s+Dendritic LIF", p.stdout, re.M)
    assert re.search(r"^    lif\s+Point leaky integrate-and-fire", p.stdout, re.M)
    assert "dataset:" not in p.stdout
    assert "no config group 'bogus'" in one_error_line(dendsn_here("list", "bogus"))


# ------------------------------------------------------------------ 6. resume
def test_resume_after_epoch_k_equals_the_uninterrupted_run(dendsn_here, tmp_path):
    # poisson: the RNG state must be restored too; a constant learning rate, because a cosine schedule
    # over 2 epochs is not the same run as one over 3 (the SIGTERM test below covers cosine)
    args = [*TINY, "encoder=poisson", "lr_schedule=none"]
    dendsn_here("train", *args, "epochs=3", "hydra.run.dir=full", check=True)
    dendsn_here("train", *args, "epochs=2", "hydra.run.dir=part", check=True)
    dendsn_here("train", "resume=part", "epochs=3", check=True)
    assert metrics(tmp_path / "part")["history"] == metrics(tmp_path / "full")["history"]


@pytest.mark.slow  # the same stop from inside the run is in the default suite: tests/test_resume_exact.py
def test_sigterm_mid_epoch_saves_and_resume_is_exact(tmp_path):
    args = [
        "train",
        "dataset.n_train=1500",
        "dataset.n_test=100",
        "T=12",
        "network.hidden=[48]",
        "batch_size=10",
        "epochs=3",
        "progress=false",
        "optim.lr=0.005",
    ]
    run_dendsn(*args, "hydra.run.dir=full", cwd=tmp_path, check=True)
    proc = subprocess.Popen(
        [DENDSN, *args, "hydra.run.dir=part"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    ckpt = tmp_path / "part/checkpoints/last.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "dendsn train resume=" in err and "Traceback" not in err
    assert metrics(tmp_path / "part")["status"] == "interrupted"
    saved = torch.load(ckpt, weights_only=True)
    assert (saved["epoch"], saved["batch"]) != (3, 0)
    run_dendsn("train", "resume=part", cwd=tmp_path, check=True)
    assert metrics(tmp_path / "part")["history"] == metrics(tmp_path / "full")["history"]


def test_resume_into_another_model_fails_and_keeps_the_run_record(dendsn_here, tmp_path):
    dendsn_here("train", *TINY, "hydra.run.dir=run", check=True)
    record = {f.name: f.read_text() for f in (tmp_path / "run/.hydra").glob("*.yaml")}
    last = (tmp_path / "run/checkpoints/last.pt").read_bytes()
    line = one_error_line(dendsn_here("train", "resume=run", "epochs=3", "network.hidden=[64]"))
    assert "holds a different model" in line
    assert {f.name: f.read_text() for f in (tmp_path / "run/.hydra").glob("*.yaml")} == record
    assert (tmp_path / "run/checkpoints/last.pt").read_bytes() == last
    dendsn_here("train", "resume=run", "epochs=3", check=True)  # the run goes on as it was
    assert "epochs=3" in (tmp_path / "run/.hydra/overrides.yaml").read_text()
    assert len(metrics(tmp_path / "run")["history"]) == 3


# ------------------------------------------------------------------ 7. TensorBoard
def test_tensorboard_events_have_every_tag(dendsn_here, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    dendsn_here("train", *TINY, "logger.rasters=true", "hydra.run.dir=run", check=True)
    ea = EventAccumulator(
        str(tmp_path / "run"), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0}
    )
    ea.Reload()
    tags = ea.Tags()
    for t in (
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "test/loss",
        "test/acc",
        "lr",
        "rate/layer1",
        "rate/readout",
        "hparam/test_acc",
        "hparam/val_acc",
    ):
        assert t in tags["scalars"], (t, tags["scalars"])
    assert [e.step for e in ea.Scalars("test/acc")] == [1, 2]
    assert "weights/layer1/weight" in tags["histograms"] and "weights/readout/bias" in tags["histograms"]
    assert any(t.startswith("potential/layer1") for t in tags["histograms"])
    assert "raster/layer1" in tags["images"]
    assert "config/text_summary" in tags["tensors"]
    assert "dendsn.neurons.LIF" in ea.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    hp = ea.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in hp and "_hparams_/session_start_info" in hp
    assert b"neuron" in hp["_hparams_/session_start_info"]


# ------------------------------------------------------------------ data paths through the CLI
def test_mnist_from_idx_files_trains_a_conv_net(dendsn_here, tmp_path):
    write_fake_mnist(tmp_path / "data", n_train=40, n_test=20)
    dendsn_here(
        "train",
        "dataset=mnist",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.val=10",
        "network=conv",
        "network.channels=[4,8]",
        "network.fc=16",
        "epochs=1",
        "T=3",
        "batch_size=20",
        "progress=false",
        "hydra.run.dir=run",
        check=True,
    )
    assert metrics(tmp_path / "run")["status"] == "completed"


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
    reason="Debian package dataset-fashion-mnist is not installed",
)
@pytest.mark.parametrize("encoder", [pytest.param("poisson", marks=pytest.mark.slow), "latency"])
def test_fashion_mnist_from_the_debian_package(dendsn_here, tmp_path, encoder):
    dendsn_here(
        "train",
        "dataset=fashion_mnist",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.n_train=2000",
        "dataset.n_test=200",
        f"encoder={encoder}",
        "T=4",
        "epochs=1",
        "batch_size=20",
        "network.hidden=[32]",
        "progress=false",
        "hydra.run.dir=run",
        check=True,
    )
    assert metrics(tmp_path / "run")["final"]["test_acc"] > 0.2


# ------------------------------------------------------------------ errors: one line, non-zero, no traceback
ERRORS = [
    (["neuron=lifx"], "neuron=lifx is not an option of 'neuron'; available: "),
    (["neuron.tua=3"], "neuron.tua is not a known key"),
    (["+bogus=1"], "bogus is not a known key"),
    (["batch_size=abc"], "batch_size='abc' has the wrong type"),
    (["neuron.tau=abc"], "neuron.tau='abc' has the wrong type: expected float"),
    (["T=0"], "T must be >= 1"),
    (["batch_size=0"], "batch_size must be >= 1"),
    (["epochs=0"], "epochs must be >= 1"),
    (["neuron.tau=1.0"], "tau must be > 1"),
    (["device=tpu"], "device='tpu' is not known"),
    (["seed=0,1"], "add -m"),
    (["dataset=mnist", "dataset.root=nowhere"], "dataset.download=true"),
    (["resume=nowhere"], "no checkpoint there"),
    (["encoder=latency"], "needs static inputs"),
    (["init_rate=1.5"], "init_rate=1.5 is out of range"),
    (["learning._target_=nope.Rule"], "learning._target_='nope.Rule' cannot be imported"),
    (["neuron.coupling_g=abc"], "neuron.coupling_g='abc' has the wrong type: expected float or a list of float"),
    (["neuron.coupling_g=[a]"], "neuron.coupling_g=['a'] has the wrong type"),
]


@pytest.mark.parametrize("args,expected", ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_user_mistakes_end_in_one_line(dendsn_here, args, expected):
    line = one_error_line(dendsn_here("train", *args, "progress=false", "hydra.run.dir=run"))
    assert expected in line


def test_readme_errors_section_is_what_the_cli_prints(dendsn_here):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("### Errors", 1)[1].split("```", 2)[1]
    pairs = re.findall(r"^\$ dendsn (.+)\n(dendsn: error: .+)$", block, re.M)
    assert len(pairs) >= 4, block
    for command, shown in pairs:
        assert one_error_line(dendsn_here(*command.split(), "hydra.run.dir=run")) == shown, command


def test_missing_dataset_names_root_flag_and_the_embedded_alternative(dendsn_here):
    line = one_error_line(dendsn_here("train", "dataset=mnist", "dataset.root=nowhere"))
    assert "nowhere" in line and "dataset.download=true" in line and "dataset=synthetic" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_line(dendsn_here):
    assert "no CUDA GPU" in one_error_line(dendsn_here("train", "device=cuda"))


def test_unknown_command_and_eval_without_ckpt(dendsn_here):
    assert "unknown command 'trian'" in one_error_line(dendsn_here("trian"))
    assert "needs ckpt=PATH" in one_error_line(dendsn_here("eval"))


# ------------------------------------------------------------------ plug-in classes and divergence
NAN_RULE = '''
import torch
from dendsn_cli.learning import BPTT

class NaNAfter(BPTT):
    """BPTT whose loss turns NaN after `after` batches (a user's own rule, plugged in by _target_)."""
    def __init__(self, after: int = 3, **kw):
        super().__init__(**kw)
        self.after, self.seen = after, 0
    def train_batch(self, model, x_seq, y, autocast=None):
        self.seen += 1
        loss, out = super().train_batch(model, x_seq, y, autocast)
        return (loss * float("nan") if self.seen > self.after else loss), out
'''


def test_a_user_class_plugs_in_and_nan_loss_stops_keeping_the_last_good_checkpoint(dendsn_here, tmp_path):
    (tmp_path / "myrules.py").write_text(NAN_RULE)
    env = {"PYTHONPATH": str(tmp_path)}
    # 300 samples / 50 = 6 batches an epoch: epoch 1 is clean, the NaN appears in epoch 2
    p = dendsn_here(
        "train",
        *TINY,
        "epochs=3",
        "learning._target_=myrules.NaNAfter",
        "+learning.after=7",
        "hydra.run.dir=run",
        env=env,
    )
    line = one_error_line(p)
    assert "loss became nan at epoch 2" in line and "last good checkpoint is kept" in line
    m = metrics(tmp_path / "run")
    assert m["status"] == "diverged" and m["epochs_completed"] == 1
    assert torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["epoch"] == 1


def test_profile_prints_where_the_time_goes(dendsn_here):
    p = dendsn_here("train", *TINY, "epochs=1", "profile=true", "hydra.run.dir=run", check=True)
    t = r"([\d.]+)(m?s)"  # seconds, or milliseconds below a second
    m = re.search(
        rf"^profile: data {t} \(\d+%\), train_step {t} \(\d+%\), evaluate {t} \(\d+%\), "
        rf"logging {t} \(\d+%\), checkpoint {t} \(\d+%\) \| train_step = forward {t}, "
        rf"backward {t}, optimizer {t}, other {t}$",
        p.stderr,
        re.M,
    )
    assert m, p.stderr
    forward, backward = float(m.group(11)), float(m.group(13))
    assert forward > 0 and backward > 0  # three significant digits: never rounded to 0
    p = dendsn_here("train", *TINY, "epochs=1", "learning=stdp", "profile=true", "hydra.run.dir=stdp", check=True)
    assert re.search(r"\| train_step = forward [\d.]+m?s, plasticity [\d.]+m?s, other [\d.]+m?s$", p.stderr, re.M), (
        p.stderr
    )


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    """`dendsn list | head`: the reader has gone (here `true`, which reads nothing) before dendsn writes; it
    ends quietly, without Python's BrokenPipeError traceback."""
    import subprocess

    from conftest import DENDSN

    for cmd in ("--help", "list", "train --help"):
        p = subprocess.run(f"{DENDSN} {cmd} | true", shell=True, capture_output=True, text=True, cwd=tmp_path)
        assert "Traceback" not in p.stderr and "error" not in p.stderr, (cmd, p.stderr)
