"""Checkpoints: atomic writes, RNG state capture, and loading with one-line errors.

A checkpoint is one ``torch.save`` dict:

    format      "dendsn-1"
    overrides   the command-line overrides of the run (so eval/resume compose the same config)
    model       model.state_dict()
    rule        the learning rule's optimizer/scheduler state
    epoch       epochs completed;  batch: batches done in the next epoch (non-zero after Ctrl-C)
    progress    running sums of the partial epoch
    history     per-epoch metrics so far;  best: the best test accuracy and its epoch
    rng         python / numpy / torch (+cuda) generator states
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from .errors import UserError

FORMAT = "dendsn-1"


def save_atomic(obj: dict, path: Path) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def find(path: str, key: str) -> Path:
    """A checkpoint file from a run dir (its checkpoints/last.pt) or a file path."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "checkpoints" / "last.pt" if (p / "checkpoints").is_dir() else p / "last.pt"
    if not p.is_file():
        raise UserError(f"{key}={path}: no checkpoint there (give a run dir with checkpoints/last.pt, or a .pt file)")
    return p


def load(path: Path, key: str) -> dict:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, OSError, ValueError) as e:
        raise UserError(f"{key}={path} is not a readable checkpoint ({type(e).__name__}); it may be corrupt or truncated") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise UserError(f"{key}={path} is not a dendsn checkpoint (format {FORMAT} expected)")
    return ck


def load_model_state(model: torch.nn.Module, state: dict, path: Path, key: str) -> None:
    """Load weights, or say in one line how the checkpoint's model differs from this one."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            k = shapes[0]
            parts.append(f"{k} is {tuple(state[k].shape)} there but {tuple(own[k].shape)} here")
        if missing:
            parts.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise UserError(
            f"{key}={path} holds a different model ({'; '.join(parts)}); use the overrides it was trained with"
        )
    model.load_state_dict(state)
