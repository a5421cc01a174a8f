"""Shared helpers: run the real `dendsn` CLI on tiny data, in a subprocess (`run_dendsn`, `dendsn`) or in
this process (`run_here`, `dendsn_here`)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

DENDSN = str(Path(sys.executable).with_name("dendsn"))

# A tiny synthetic run: a few seconds on a laptop CPU, still learns above chance. No pictures: drawing
# them (matplotlib) takes half of such a run; the tests of the pictures add logger.rasters=true.
TINY = [
    "dataset.n_train=300",
    "dataset.n_test=100",
    "dataset.val=100",
    "T=12",
    "network.hidden=[48]",
    "batch_size=50",
    "epochs=2",
    "progress=false",
    "optim.lr=0.005",
    "logger.rasters=false",
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
    return {
        str(f.relative_to(root)): f.read_bytes()
        for f in sorted(root.rglob("*"))
        if f.is_file() and f.name != ".dendsn.lock"
    }


# A learning rule that is BPTT exactly, plus real signals it sends to its own process at chosen
# points, so a test can stop a run at a known place: DENDSN_TEST_SIGNALS="TERM@9" (after training step
# 9), "INT@9,INT@9" (a double Ctrl-C), "KILL@9", "TERM@eval12" (at the first evaluation batch after
# step 12: inside the last epoch's evaluation), "TERM@build" (while the run is being set up).
# Steps count from 1 in each process, across the jobs of a sweep run in it; each signal is sent once.
# Under torchrun, DENDSN_TEST_SIGNAL_RANK=R sends them in the process of rank R only.
# Without the variable the rule only trains.
SIGNAL_RULE = """
import io
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
"""

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


# ---------------------------------------------------------------- the CLI in this process
# Most tests ask what a command prints and writes, not how a process starts: `run_here` (and the
# `dendsn_here` fixture) call the real entry point `dendsn_cli.cli.main` in this process, as the console
# script would, which saves the 3-5 s start-up (torch, Hydra, ...) of a subprocess per call. It returns
# what `run_dendsn` returns (returncode, stdout, stderr), so a test switches with one word. It sets up what
# a fresh process has and puts back afterwards everything a run changes in the process: cwd, sys.argv,
# sys.path and plug-in modules, os.environ, stdout/stderr (also for logging handlers and tqdm, which
# resolve sys.stdout/sys.stderr when they write or are made), logging (root and every logger: handlers,
# levels; the run's own handlers are closed), Python's warning display and filters, signal handlers,
# Hydra's singletons, torch's default dtype, thread count, grad mode and random states (numpy's and
# Python's too), and every module-level variable of dendsn_cli / dendsn (rebound names, the contents of
# lists, dicts and sets, the attributes of module-level objects such as the stop flag; lock files a run
# left open are closed, so its run dir is free again). Keep subprocesses (`run_dendsn`, `dendsn`) for
# what needs a process: signals, the console script's start-up, launchers, torchrun, pipes, and
# anything read from the environment at import time.
PACKAGES = ("dendsn_cli", "dendsn")
_DEFAULT_WARNING_FILTERS = [
    ("default", None, DeprecationWarning, "__main__", 0),
    ("ignore", None, DeprecationWarning, None, 0),
    ("ignore", None, PendingDeprecationWarning, None, 0),
    ("ignore", None, ImportWarning, None, 0),
    ("ignore", None, ResourceWarning, None, 0),
]  # a fresh interpreter's (python -c)
_IMPORTED = []


def _import_every_module() -> None:
    """Import every module of dendsn_cli once, so the state of each is saved before a run changes it."""
    import importlib
    import pkgutil

    if _IMPORTED:
        return
    import dendsn_cli.cli  # noqa: F401

    pkg = importlib.import_module("dendsn_cli")
    for info in pkgutil.walk_packages(pkg.__path__, "dendsn_cli.", onerror=lambda name: None):
        if not info.name.endswith("__main__"):
            try:
                importlib.import_module(info.name)
            except Exception:  # an optional dependency missing: that module is never run here
                pass
    _IMPORTED.append(True)


def _ours(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in PACKAGES)


def _save_modules() -> list:
    import copy
    import types

    saved = []
    for name, mod in list(sys.modules.items()):
        if mod is None or not _ours(name):
            continue
        entries = []
        for key, value in list(vars(mod).items()):
            if key.startswith("__") or isinstance(value, (types.ModuleType, types.FunctionType, type)):
                continue
            if type(value) in (list, dict, set):
                entries.append((key, value, copy.copy(value)))
            elif _ours(type(value).__module__) and isinstance(getattr(value, "__dict__", None), dict):
                entries.append(
                    (
                        key,
                        value,
                        {k: copy.copy(v) if type(v) in (list, dict, set) else v for k, v in vars(value).items()},
                    )
                )
            else:
                entries.append((key, value, None))
        saved.append((vars(mod), entries))
    return saved


def _restore_modules(saved: list) -> None:
    import io

    for namespace, entries in saved:
        for key, value, contents in entries:
            namespace[key] = value
            if contents is None:
                continue
            if type(value) is dict:
                for k, v in value.items():  # e.g. a run dir's lock file: closing it frees the dir
                    if isinstance(v, io.IOBase) and contents.get(k) is not v:
                        v.close()
                value.clear()
                value.update(contents)
            elif type(value) is list:
                value[:] = contents
            elif type(value) is set:
                value.clear()
                value.update(contents)
            else:
                vars(value).clear()
                vars(value).update(contents)


def _save_logging():
    import logging

    loggers = {n: lg for n, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    root = logging.getLogger()
    return (
        logging.root.manager.disable,
        {lg: (lg.level, list(lg.handlers), lg.propagate, lg.disabled) for lg in [root, *loggers.values()]},
    )


def _restore_logging(saved) -> None:
    import logging

    disable, loggers = saved
    now = [
        logging.getLogger(),
        *(lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)),
    ]
    kept = {h for _, handlers, _, _ in loggers.values() for h in handlers}
    for lg in now:
        for h in lg.handlers:
            if h not in kept:  # the run's own (its train.log): closed
                h.close()
        level, handlers, propagate, disabled = loggers.get(lg, (logging.NOTSET, [], True, False))
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.propagate, lg.disabled = propagate, disabled
    logging.disable(disable)


def _fresh_logging() -> None:
    """A fresh process's root logger: level WARNING, no handlers (records then reach stderr through
    logging.lastResort), not pytest's capturing handlers."""
    import logging

    root = logging.getLogger()
    root.handlers[:] = []
    root.setLevel(logging.WARNING)
    logging.disable(logging.NOTSET)


def _show_warning_on_stderr(msg) -> None:  # Python's own display (pytest records warnings instead)
    import warnings

    file = msg.file if msg.file is not None else sys.stderr
    try:
        file.write(warnings._formatwarnmsg(msg))
    except OSError:
        pass


def _clear_hydra() -> None:
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None


class _Terminal(io.StringIO):
    """Captured text, with the encoding a subprocess's pipe has (tqdm draws its bars by it)."""

    encoding = "utf-8"
    errors = "strict"


def _exit_code(code) -> tuple[int, str]:
    """The exit status (and what Python prints) of ``sys.exit(code)``."""
    if code is None:
        return 0, ""
    if isinstance(code, int):
        return code, ""
    return 1, f"{code}\n"


def run_here(*args, cwd, timeout=None, env=None, check=None):
    """`run_dendsn`, but `dendsn_cli.cli.main(args)` in this process (see above); ``timeout`` is not
    enforced. ``env``: variables set for the call; its PYTHONPATH also goes on sys.path, and the modules
    imported from there are forgotten afterwards (the next call imports them afresh)."""
    import contextlib
    import importlib
    import random
    import traceback
    import warnings

    import numpy as np
    import torch

    _import_every_module()
    from dendsn_cli import cli

    env = dict(env or {})
    extra_path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    saved_env, saved_cwd, saved_argv, saved_path = dict(os.environ), os.getcwd(), list(sys.argv), list(sys.path)
    saved_modules_names = set(sys.modules)
    signals = {}
    for s in signal.valid_signals():
        with contextlib.suppress(ValueError, OSError, TypeError):
            signals[s] = signal.getsignal(s)
    torch_state = (
        torch.get_default_dtype(),
        torch.get_num_threads(),
        torch.is_grad_enabled(),
        torch.are_deterministic_algorithms_enabled(),
        torch.get_rng_state(),
        np.random.get_state(),
        random.getstate(),
    )
    saved_logging, saved_modules = _save_logging(), _save_modules()
    out, err = _Terminal(), _Terminal()
    code = 0
    try:
        os.environ.pop("HYDRA_FULL_ERROR", None)
        os.environ.pop("DENDSN_DEBUG", None)
        os.environ["PYTHONUNBUFFERED"] = "1"
        os.environ.update(env)
        sys.path[:0] = extra_path
        importlib.invalidate_caches()
        os.chdir(cwd)
        sys.argv = [DENDSN, *args]
        _clear_hydra()
        _fresh_logging()
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.filters[:] = _DEFAULT_WARNING_FILTERS
            warnings._filters_mutated()
            warnings.showwarning = warnings._showwarning_orig
            warnings._showwarnmsg_impl = _show_warning_on_stderr
            try:
                cli.main(list(args))
            except SystemExit as e:
                code, said = _exit_code(e.code)
                err.write(said)
            except KeyboardInterrupt:
                raise
            except BaseException:
                traceback.print_exc(file=err)
                code = 1
    finally:
        _restore_modules(saved_modules)
        _restore_logging(saved_logging)
        _clear_hydra()
        for s, h in signals.items():
            if h is not None and signal.getsignal(s) is not h:
                signal.signal(s, h)
        dtype, threads, grad, deterministic, rng, np_rng, py_rng = torch_state
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)
        torch.set_grad_enabled(grad)
        torch.use_deterministic_algorithms(deterministic)
        torch.set_rng_state(rng)
        np.random.set_state(np_rng)
        random.setstate(py_rng)
        os.chdir(saved_cwd)
        sys.argv[:] = saved_argv
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules_names:  # plug-ins from env's PYTHONPATH or the run dir
            f = getattr(sys.modules[name], "__file__", None) or ""
            if f and any(os.path.abspath(f).startswith(os.path.abspath(p) + os.sep) for p in [*extra_path, str(cwd)]):
                del sys.modules[name]
        for key in set(os.environ) - set(saved_env):
            del os.environ[key]
        for key, value in saved_env.items():
            if os.environ.get(key) != value:
                os.environ[key] = value

    def text(s: str) -> str:  # what a subprocess's text mode reads: universal newlines
        return s.replace("\r\n", "\n").replace("\r", "\n")

    p = InProcess(code, text(out.getvalue()), text(err.getvalue()))
    if check is not None:
        assert (p.returncode == 0) == check, f"rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


@pytest.fixture
def dendsn_here(tmp_path):
    """`dendsn_here(*args, **kw)`: `run_here` in a fresh temp dir, as the `dendsn` fixture runs the script.
    An exception escaping main() ends as it would in a process: exit 1, its traceback on stderr."""

    def call(*args, **kw):
        kw.setdefault("cwd", tmp_path)
        return run_here(*args, **kw)

    return call


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One real one-epoch run, trained once per test session; copy it before changing anything."""
    root = tmp_path_factory.mktemp("tiny_run")
    run_here("train", *TINY, "epochs=1", "hydra.run.dir=run", cwd=root, check=True)
    return root / "run"


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A copy of `tiny_run` in this test's temp dir (tmp_path / "run")."""
    import shutil

    return Path(shutil.copytree(tiny_run, tmp_path / "run"))
