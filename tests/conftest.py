"""Shared helpers: run the real `dendsn` console script in a subprocess on tiny data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DENDSN = str(Path(sys.executable).with_name("dendsn"))

# A tiny synthetic run: a few seconds on a laptop CPU, still learns above chance. No pictures: drawing
# them (matplotlib) takes half of such a run; the tests of the pictures add logger.rasters=true.
TINY = [
    "dataset.n_train=300", "dataset.n_test=100", "dataset.val=100", "T=12", "network.hidden=[48]",
    "batch_size=50", "epochs=2", "progress=false", "optim.lr=0.005", "logger.rasters=false",
]


def run_dendsn(*args, cwd, timeout=600, env=None, check=None):
    """Run `dendsn ARGS` in ``cwd``; return the CompletedProcess (stdout/stderr as text)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    full_env.pop("DENDSN_DEBUG", None)
    p = subprocess.run([DENDSN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check is not None:
        assert (p.returncode == 0) == check, f"rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


@pytest.fixture
def dendsn(tmp_path):
    """`dendsn(*args)` run inside a fresh temp dir (runs land in its outputs/)."""

    def call(*args, **kw):
        kw.setdefault("cwd", tmp_path)
        return run_dendsn(*args, **kw)

    return call


def one_error(p, *fragments, code: int | None = 2) -> str:
    """A refused input: exit ``code`` (any non-zero when None), exactly one stderr line that says
    ``dendsn: error: ...`` and is the last line, no traceback anywhere; every fragment in that line."""
    out = p.stdout + p.stderr
    assert "Traceback" not in out, out
    assert p.returncode != 0 if code is None else p.returncode == code, f"rc={p.returncode}\n{out}"
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("dendsn: error: ")]
    assert len(errors) == 1 and lines and lines[-1] == errors[0], p.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def snapshot(root) -> dict:
    """{relative path: bytes} of every file under ``root``: compare before and after to prove that
    nothing written before was lost or changed. A run dir's lock file is left out: it holds the pid of
    the last process that locked the dir, bookkeeping rather than anything a run wrote."""
    root = Path(root)
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*"))
            if f.is_file() and f.name != ".dendsn.lock"}


# A learning rule that is BPTT exactly, plus real signals it sends to its own process at chosen
# points, so a test can stop a run at a known place: DENDSN_TEST_SIGNALS="TERM@9" (after training step
# 9), "INT@9,INT@9" (a double Ctrl-C), "KILL@9", "TERM@eval12" (at the first evaluation batch after
# step 12: inside the last epoch's evaluation), "TERM@build" (while the run is being set up).
# Steps count from 1 in each process, across the jobs of a sweep run in it; each signal is sent once.
# Under torchrun, DENDSN_TEST_SIGNAL_RANK=R sends them in the process of rank R only.
# Without the variable the rule only trains.
SIGNAL_RULE = '''
import os
import signal

from dendsn_cli.learning import BPTT

STEPS = [0]
FIRED = set()


class SignalAt(BPTT):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._fire("build")

    @property
    def steps(self):
        return STEPS[0]

    def _fire(self, where):
        only = os.environ.get("DENDSN_TEST_SIGNAL_RANK")       # under torchrun: signal one process only
        if only is not None and os.environ.get("RANK", "0") != only:
            return
        for i, item in enumerate(filter(None, os.environ.get("DENDSN_TEST_SIGNALS", "").split(","))):
            name, at = item.split("@")
            due = (at == where == "build" or (where == "step" and at == str(self.steps))
                   or (where == "eval" and at.startswith("eval") and self.steps >= int(at[4:])))
            if due and i not in FIRED:
                FIRED.add(i)
                os.kill(os.getpid(), getattr(signal, "SIG" + name))

    def train_batch(self, *args, **kwargs):
        result = super().train_batch(*args, **kwargs)
        STEPS[0] += 1
        self._fire("step")
        return result

    def eval_batch(self, *args, **kwargs):
        self._fire("eval")
        return super().eval_batch(*args, **kwargs)
'''

SIGNAL_TARGET = "learning._target_=sigrule.SignalAt"


@pytest.fixture
def signal_env(tmp_path):
    """Environment that puts the `sigrule` plug-in on PYTHONPATH; pass signals with DENDSN_TEST_SIGNALS."""
    plug = tmp_path / "plugins"
    plug.mkdir(exist_ok=True)
    (plug / "sigrule.py").write_text(SIGNAL_RULE)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(plug), os.environ.get("PYTHONPATH", "")]))}


class InProcess:
    """What `run_dendsn` returns, for a call of `dendsn_cli.cli.main` in this process."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def dendsn_here(tmp_path, monkeypatch):
    """`dendsn_here(*args)`: the real CLI entry point (`dendsn_cli.cli.main`) called in this process, in a
    temp dir: for inputs refused before any training, where a subprocess would only add start-up time.
    An exception escaping main() fails the test with its traceback, as a user would see it."""
    import contextlib
    import io

    from dendsn_cli import cli

    def call(*args):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", ["dendsn", *args])
        monkeypatch.delenv("DENDSN_DEBUG", raising=False)
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
        out, err, code = io.StringIO(), io.StringIO(), 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        return InProcess(code, out.getvalue(), err.getvalue())

    return call


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One real one-epoch run, trained once per test session; copy it before changing anything."""
    root = tmp_path_factory.mktemp("tiny_run")
    run_dendsn("train", *TINY, "epochs=1", "hydra.run.dir=run", cwd=root, check=True)
    return root / "run"


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A copy of `tiny_run` in this test's temp dir (tmp_path / "run")."""
    import shutil

    return Path(shutil.copytree(tiny_run, tmp_path / "run"))
