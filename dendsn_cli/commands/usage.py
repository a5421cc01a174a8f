"""`dendsn --help` and `dendsn --version`: text only, nothing heavy imported."""

from __future__ import annotations

import importlib.util
import re
import sys
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version

USAGE = """usage: dendsn <command> [args]

commands:
  train [KEY=VALUE ...]        train a network (add -m for a sweep, --help for groups and keys)
  eval ckpt=PATH [KEY=VALUE]   evaluate a checkpoint on the test split
  simulate [KEY=VALUE ...]     drive a neuron with a stimulus, no training: f-I curve, traces (--help)
  list [GROUP]                 config groups and their options
  torchrun [OPTIONS] train ... one training on several processes / GPUs / machines (torchrun's options)

examples:
  dendsn train
  dendsn train dataset=fashion_mnist neuron=plif epochs=5
  dendsn train -m neuron=lif,if seed=0,1
  dendsn train -m hydra/sweeper=optuna 'optim.lr=interval(0.001,0.03)' neuron=lif,dend_lif
  dendsn eval ckpt=outputs/2026-01-01/12-00-00/checkpoints/best.pt
  dendsn simulate neuron=dend_lif stimulus=poisson
  dendsn torchrun --nproc_per_node=4 train network=conv dataset=fashion_mnist
  dendsn train -m hydra/launcher=submitit_slurm hydra.launcher.partition=gpu seed=0,1,2"""


def version(dist: str = "dendsn") -> str:
    try:
        return dist_version(dist)
    except PackageNotFoundError:
        return "unknown (not installed)"


def version_line() -> str:
    """`dendsn --version`: torch's version from its package metadata (importing torch takes seconds)."""
    return f"dendsn {version()} (torch {torch_version()}, python {sys.version.split()[0]})"


def torch_version() -> str:
    """``torch.__version__`` (with its local part, e.g. 2.14.1+cu130), read from torch/version.py."""
    spec = importlib.util.find_spec("torch")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            text = open(f"{folder}/version.py").read()
        except OSError:
            continue
        m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
        if m:
            return m.group(1)
    return version("torch")
