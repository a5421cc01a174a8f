"""Shared helpers: run the real `dendsn` console script in a subprocess on tiny data."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

DENDSN = str(Path(sys.executable).with_name("dendsn"))

# A tiny synthetic run: a few seconds on a laptop CPU, still learns above chance.
TINY = [
    "dataset.n_train=300", "dataset.n_test=100", "dataset.val=100", "T=12", "network.hidden=[48]",
    "batch_size=50", "epochs=2", "progress=false", "optim.lr=0.005",
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
