"""`validate`: range checks of the root keys, signature checks of every group (`check_node`), and the
cross-group rules (`capabilities`: what each chosen class declares it provides and accepts). Range checks
of model parameters live in the model constructors (they raise ValueError, turned into one line by the CLI)."""

from __future__ import annotations

import re

from omegaconf import DictConfig

from ..errors import UserError, shorten
from .capabilities import check_events, check_inputs
from .checks import not_known, out_of_range
from .options import choice_name
from .schema import GROUPS, DendsnConfig
from .signature import check_node

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def validate(cfg: DictConfig) -> None:
    """Range checks of the root keys and signature checks of every group; raise UserError."""
    known = set(DendsnConfig.__dataclass_fields__) | {"hydra"}
    for key in cfg.keys():
        if key not in known:
            raise UserError(f"{key} is not a known key; the root keys are: {', '.join(sorted(known - {'hydra'}))}")
    check_root(cfg)
    if cfg.get("wiring") is not None and "wiring" not in cfg.neuron:
        raise UserError(
            f"wiring applies to dendritic neurons only, and neuron={choice_name(cfg, 'neuron')} is a point neuron: "
            "pick a dendritic neuron (e.g. neuron=dend_lif) or drop the wiring override"
        )
    for group in GROUPS:
        node = cfg.get(group)
        if isinstance(node, DictConfig):
            check_node(node, group)
            check_step_mode(node, group)
    check_inputs(cfg)
    check_events(cfg)


def check_root(cfg: DictConfig) -> None:
    """The root keys' ranges and choices."""
    if not 0 <= cfg.seed < 2**63:
        raise out_of_range("seed", shorten(cfg.seed, 40), "seed must be an integer in [0, 2**63)")
    for key in ("T", "batch_size", "epochs"):
        if cfg[key] < 1:
            raise out_of_range(key, cfg[key], f"{key} must be >= 1")
    for key in ("init_rate", "init_readout_rate"):
        if cfg[key] is not None and not 0.0 < cfg[key] < 1.0:
            raise out_of_range(
                key,
                cfg[key],
                "it must be in (0, 1) (spikes per neuron and step), or null to keep the plain initialisation",
            )
    if cfg.early_stop.patience is not None and cfg.early_stop.patience < 1:
        raise out_of_range(
            "early_stop.patience", cfg.early_stop.patience, "it must be >= 1 (epochs), or null for no early stopping"
        )
    if cfg.early_stop.min_delta < 0:
        raise out_of_range("early_stop.min_delta", cfg.early_stop.min_delta, "it must be >= 0")
    if not DEVICE_PATTERN.match(str(cfg.device)):
        raise not_known("device", cfg.device, "auto, cpu, cuda or cuda:N")
    if cfg.amp not in ("none", "bf16", "fp16"):
        raise not_known("amp", cfg.amp, "none, bf16 or fp16")
    if cfg.lr_schedule not in ("none", "cosine", "exp"):
        raise not_known("lr_schedule", cfg.lr_schedule, "none, cosine or exp")
    if not cfg.lr_decay_epochs > 0:
        raise out_of_range(
            "lr_decay_epochs",
            cfg.lr_decay_epochs,
            "it must be > 0 (epochs for the learning rate to fall by 1/e under lr_schedule=exp)",
        )


def check_step_mode(node: DictConfig, path: str) -> None:
    """Layers run over the whole time axis at once (step_mode 'm'): the runner feeds [T, B, ...] and the
    learning rules read every step's state; single-step mode would silently drop the memory across steps."""
    for key in node.keys():
        value = node._get_node(key)
        if key == "step_mode" and node[key] != "m":
            raise UserError(
                f"{path}.step_mode={node[key]!r} is not supported: dendsn runs every layer over the whole "
                "time axis (step_mode 'm'); drop the override"
            )
        if isinstance(value, DictConfig):
            check_step_mode(value, f"{path}.{key}")
