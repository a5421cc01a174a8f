"""Bad-input suite, faults: signals at every stage of a run, a full disk, memory, a broken plug-in.

Signals are real: the `sigrule` plug-in (conftest.SIGNAL_RULE) sends them to its own process at a
chosen point. Every way a run ends leaves a true `status` in metrics.json and one line on stderr.
"""

import json
import resource
import signal
import subprocess

from conftest import DENDSN, SIGNAL_TARGET, TINY, one_error, run_here, snapshot


def metrics(run):
    return json.loads((run / "metrics.json").read_text())


def test_sigterm_while_the_run_is_set_up_stops_before_training(dendsn, tmp_path, signal_env):
    p = dendsn(
        "train", *TINY, SIGNAL_TARGET, "hydra.run.dir=run", env={**signal_env, "DENDSN_TEST_SIGNALS": "TERM@build"}
    )
    one_error(p, "interrupted (before the first batch): nothing was trained or saved", code=130)
    assert metrics(tmp_path / "run")["status"] == "interrupted"
    assert not (tmp_path / "run/checkpoints").exists()


def test_sigterm_during_the_last_evaluation_completes_the_run(dendsn, tmp_path, signal_env):
    p = dendsn(
        "train", *TINY, SIGNAL_TARGET, "hydra.run.dir=run", env={**signal_env, "DENDSN_TEST_SIGNALS": "TERM@eval12"}
    )
    assert p.returncode == 0, p.stderr
    m = metrics(tmp_path / "run")
    assert m["status"] == "completed" and m["epochs_completed"] == 2


def test_a_double_ctrl_c_stops_at_once_and_says_so(dendsn, tmp_path, signal_env):
    p = dendsn(
        "train", *TINY, SIGNAL_TARGET, "hydra.run.dir=run", env={**signal_env, "DENDSN_TEST_SIGNALS": "INT@9,INT@9"}
    )
    one_error(p, "interrupted at once (a second Ctrl-C)", "dendsn train resume=", code=130)
    assert metrics(tmp_path / "run")["status"] == "interrupted"


def test_a_killed_run_is_told_apart_from_a_running_one(dendsn, tmp_path, signal_env):
    from dendsn_cli import rundir, sweep

    p = dendsn("train", *TINY, SIGNAL_TARGET, "hydra.run.dir=run", env={**signal_env, "DENDSN_TEST_SIGNALS": "KILL@9"})
    assert p.returncode == -signal.SIGKILL
    run = tmp_path / "run"
    assert metrics(run)["status"] == "running"  # nobody could write otherwise: the process is gone
    assert not rundir.is_locked(run)  # ... but its lock went with it
    assert sweep.read_job(run, tmp_path)["status"] == "killed"


def _limit_file_size(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_checkpoint_that_cannot_be_written_leaves_no_partial_file(tmp_path):
    args = [DENDSN, "train", *TINY, "epochs=1", "hydra.run.dir=run", "logger.histograms=false", "logger.rasters=false"]
    p = subprocess.run(
        args, cwd=tmp_path, capture_output=True, text=True, timeout=600, preexec_fn=_limit_file_size(48 * 1024)
    )
    one_error(p, "could not write the checkpoint", "last.pt", "the partial file was removed")
    left = [f.name for f in (tmp_path / "run/checkpoints").iterdir()]
    assert left == [], left  # no half-written temp file keeps the space
    assert metrics(tmp_path / "run")["status"] == "failed"


def test_a_run_too_big_for_memory_names_the_keys_that_set_its_size(dendsn, tmp_path):
    one_error(dendsn("train", "T=10000000", "progress=false"), "out of memory", "T=10000000", "batch_size=")
    assert not (tmp_path / "outputs").exists()


BROKEN = """
import torch
from dendsn_cli.encoders import Direct

class Broken(Direct):
    def forward(self, *args, **kwargs):
        raise RuntimeError("the plug-in broke")
"""


def test_an_internal_error_in_eval_is_one_line(tmp_path, run_copy):
    (tmp_path / "broken.py").write_text(BROKEN)
    before = snapshot(tmp_path / "run")
    p = run_here("eval", "ckpt=run", "encoder._target_=broken.Broken", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    one_error(p, "internal error: RuntimeError: the plug-in broke", "DENDSN_DEBUG=1", code=1)
    assert snapshot(tmp_path / "run") == before
