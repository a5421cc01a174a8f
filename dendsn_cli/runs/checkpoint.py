"""Checkpoints: atomic writes, RNG state capture, and loading as data only, with one-line errors.

A checkpoint is one ``torch.save`` dict:

    format      "dendsn-1"
    overrides   the command-line overrides of the run (so eval/resume compose the same config)
    model       model.state_dict()
    rule        the learning rule's optimizer/scheduler state
    epoch       epochs completed;  batch: batches done in the next epoch (non-zero after Ctrl-C)
    batch_size  the batch size those batches had (a resume in mid-epoch must keep it)
    progress    running sums of the partial epoch
    history     per-epoch metrics so far;  best: the best epoch (chosen on validation) and its metrics
    rng         python / numpy / torch (+cuda) generator states, as ints, tuples and tensors

Trust. A checkpoint is loaded with torch's ``weights_only`` unpickler: tensors, numbers, strings,
lists, tuples and dicts (and, for checkpoints written before the RNG state was stored as tensors,
NumPy arrays), never an arbitrary Python object, so loading a file cannot run code. Its stored
overrides are a second way in (``encoder._target_=os.system``); `check_overrides` refuses any
``_target_`` that is neither one of dendsn's own options nor named on this command line.
"""

from __future__ import annotations

import errno
import os
import pickle
import random
import re
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig

from ..config import compose
from ..errors import UserError, shorten

FORMAT = "dendsn-1"


def save_atomic(obj: dict, path: Path) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``. When the write fails
    (a full disk, a quota, a file-size limit) the temp file is removed, ``path`` keeps the previous
    checkpoint, and the error is one line that says so."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as RuntimeError
        tmp.unlink(missing_ok=True)
        code = getattr(e, "errno", None)
        full = code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e)
        what = (
            "the disk is full"
            if full
            else (e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0])
        )
        kept = "the previous checkpoint there is kept" if path.exists() else "no earlier checkpoint was there"
        raise UserError(
            f"could not write the checkpoint {path}: {what}; {kept} and the partial file was removed; "
            "free space (or raise the limit) and resume"
        ) from None


def rng_state() -> dict:
    """Every generator's state as plain data (ints, tuples, tensors): loadable with weights_only."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((name, keys.astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def find(path: str, key: str) -> Path:
    """A checkpoint file from a run dir (its checkpoints/last.pt) or a file path."""
    if not str(path).strip():
        raise UserError(
            f"{key}= is empty (an unset shell variable?): give a run dir or a checkpoint file, "
            f"e.g. {key}=outputs/2026-01-01/12-00-00"
        )
    try:
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / "checkpoints" / "last.pt" if (p / "checkpoints").is_dir() else p / "last.pt"
        found = p.is_file()
    except OSError as e:  # a name too long for the file system, a loop of links
        raise UserError(
            f"{key}={shorten(path)} cannot be looked up ({e.strerror or e}); give a run dir or a .pt file"
        ) from None
    if not found:
        raise UserError(
            f"{key}={shorten(path)}: no checkpoint there (give a run dir with checkpoints/last.pt, or a .pt file)"
        )
    return p


def _numpy_globals() -> list:
    """What torch's data-only unpickler needs, beyond tensors, to rebuild a NumPy array (the RNG state
    of checkpoints written before it was stored as a tensor): array construction, nothing callable else."""
    core = getattr(np, "_core", None) or np.core
    out = [core.multiarray._reconstruct, np.ndarray, np.dtype]
    out += [type(np.dtype(t)) for t in ("uint32", "int64", "float64")]
    return out


# the keys of a checkpoint, and the types each must have
_SCHEMA = {
    "format": str,
    "overrides": list,
    "model": dict,
    "rule": dict,
    "epoch": int,
    "batch": int,
    "history": list,
    "best": dict,
    "rng": dict,
}


def load(path: Path, key: str) -> dict:
    """The checkpoint at ``path`` as data (no code runs while loading), its keys and types checked."""
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):  # a class or function: data-only loading refuses to build it
            raise UserError(
                f"{key}={shorten(path)} holds Python objects beyond tensors, numbers and strings, which could run code "
                "when loaded, so it was not loaded; dendsn's own checkpoints never do: use one written by dendsn"
            ) from None
        raise UserError(
            f"{key}={shorten(path)} is not a readable checkpoint (UnpicklingError); it may be corrupt or truncated"
        ) from None
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError, ValueError, TypeError, AttributeError, KeyError) as e:
        raise UserError(
            f"{key}={shorten(path)} is not a readable checkpoint ({type(e).__name__}); it may be corrupt or truncated"
        ) from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise UserError(f"{key}={shorten(path)} is not a dendsn checkpoint (format {FORMAT} expected)")
    for name, kind in _SCHEMA.items():
        value = ck.get(name)
        if name not in ck or not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            what = (
                "is missing"
                if name not in ck
                else f"is a {type(value).__name__}, where dendsn writes a {kind.__name__}"
            )
            raise UserError(
                f"{key}={shorten(path)} is damaged: its '{name}' {what}; use another checkpoint (best.pt or last.pt)"
            )
    rng = ck["rng"]
    if not all(k in rng for k in ("python", "numpy", "torch")) or not isinstance(rng["torch"], torch.Tensor):
        raise UserError(
            f"{key}={shorten(path)} is damaged: its random-number state is incomplete; "
            "use another checkpoint (best.pt or last.pt)"
        )
    bad = next((o for o in ck["overrides"] if not isinstance(o, str)), None)
    tensors = all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ck["model"].items())
    if bad is not None or not tensors or ck["epoch"] < 0 or ck["batch"] < 0:
        raise UserError(
            f"{key}={shorten(path)} is damaged: its overrides, weights or position are not what dendsn writes; "
            "use another checkpoint (best.pt or last.pt)"
        )
    return ck


def _targets(node, prefix: str = "") -> dict:
    """{config path: _target_ value} of every node of a composed config (resolved)."""
    out = {}
    if isinstance(node, DictConfig):
        for k in node.keys():
            path = f"{prefix}.{k}" if prefix else str(k)
            value = node._get_node(k)
            if k == "_target_":
                out[path] = str(node[k])
            elif isinstance(value, (DictConfig, ListConfig)):
                out.update(_targets(value, path))
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            out.update(_targets(item, f"{prefix}[{i}]"))
    return out


def project_targets() -> set:
    """Every ``_target_`` that one of dendsn's own config options names."""
    found, todo = set(), [resources.files("dendsn_conf")]
    while todo:
        d = todo.pop()
        for f in d.iterdir():
            if f.is_dir():
                todo.append(f)
            elif f.name.endswith(".yaml"):
                found |= set(re.findall(r"_target_:\s*([\w.]+)", f.read_text()))
    return found


def check_overrides(stored: list[str], user: list[str], path: Path, key: str) -> list[str]:
    """The overrides a checkpoint's run is composed with: its stored ones, then the user's (which win
    key by key). Refuse them when they would make Hydra build something that is neither one of
    dendsn's own classes nor named by the user on this command line (a checkpoint from someone else
    could otherwise run any code: ``encoder._target_=torch.load``), and refuse stored hydra.* settings."""
    hydra_keys = [o for o in stored if o.lstrip("+~").startswith("hydra")]
    if hydra_keys:
        raise UserError(
            f"{key}={shorten(path)} stores the Hydra setting {shorten(hydra_keys[0], 60)!r}, which dendsn never "
            "writes; the checkpoint is not used (it may have been crafted)"
        )
    user_keys = {o.split("=", 1)[0].lstrip("+~") for o in user}
    merged = [o for o in stored if o.split("=", 1)[0].lstrip("+~") not in user_keys] + list(user)
    allowed = project_targets()
    try:
        allowed |= set(_targets(compose(list(user))).values())
    except UserError:
        pass  # the user's overrides alone do not compose: only their literal targets
    allowed |= {o.split("=", 1)[1] for o in user if "=" in o and o.split("=", 1)[0].endswith("_target_")}
    for where, target in _targets(compose(merged)).items():
        if target not in allowed:
            raise UserError(
                f"{key}={shorten(path)}: its stored overrides make {where}={target}, which is not one of dendsn's own "
                f"classes, so the checkpoint is not used (a checkpoint from someone else could run any code this way); "
                f"if you trust it, name it on the command line: {where}={target}"
            )
    return merged


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
