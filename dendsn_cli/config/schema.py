"""The root config's types: `DendsnConfig` in Hydra's ConfigStore (as ``dendsn_schema``, the first entry of
conf/train.yaml's defaults list), so a misspelt root key or a wrong type fails at composition.

Types only: every default is in conf/train.yaml (tests/test_config_schema.py compares the two). A group
that may be absent (wiring, synapse, readout, experiment) is None until an option is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

CONFIG_MODULE = "dendsn_conf"
CONFIG_NAME = "train"
GROUPS = ("dataset", "encoder", "network", "synapse", "neuron", "wiring", "readout", "learning", "optim", "logger")
OPTIONAL_GROUPS = ("experiment",)  # groups that default to nothing: Hydra ignores an unknown option of these


@dataclass
class EarlyStop:
    patience: Optional[int] = MISSING  # stop when the validation accuracy has not improved for this many epochs
    min_delta: float = MISSING  # an improvement must exceed this


@dataclass
class DendsnConfig:
    dataset: Any = MISSING
    encoder: Any = MISSING
    network: Any = MISSING
    neuron: Any = MISSING
    wiring: Any = None
    synapse: Any = None
    readout: Any = None
    learning: Any = MISSING
    optim: Any = MISSING
    logger: Any = MISSING
    experiment: Any = None
    seed: int = MISSING
    device: str = MISSING
    epochs: int = MISSING
    T: int = MISSING
    batch_size: int = MISSING
    init_rate: Optional[float] = MISSING
    init_readout_rate: Optional[float] = MISSING
    init_lr_scale: bool = MISSING
    early_stop: EarlyStop = field(default_factory=EarlyStop)
    amp: str = MISSING
    lr_schedule: str = MISSING
    lr_decay_epochs: float = MISSING
    progress: bool = MISSING
    profile: bool = MISSING
    resume: Optional[str] = MISSING
    ckpt: Optional[str] = MISSING


ConfigStore.instance().store(name="dendsn_schema", node=DendsnConfig)
