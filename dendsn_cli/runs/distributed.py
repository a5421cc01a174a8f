"""Data-parallel training under torchrun: one process per device, gradients all-reduced by DistributedDataParallel.

    torchrun --nproc_per_node=N -m dendsn_cli train ...          (one machine, N processes)
    torchrun --nnodes=M --nproc_per_node=N --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT -m dendsn_cli train ...

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; with WORLD_SIZE > 1 the CLI joins the process group (NCCL
on GPUs, gloo on CPU) before Hydra starts, rank 0 claims the run dir and hands it to the others. Then:

- ``batch_size`` stays the *global* batch: every rank draws the same global order of batches (the run's
  seed, as in one process) and trains on its shard of each batch (`shard`), so N processes take the
  same optimizer steps on the same samples as one. Each rank's loss is weighted by its share of the
  batch (`loss_scale`), and DDP averages the gradients: the step is the gradient of the global batch's
  mean loss, whatever the split.
- Evaluation is sharded the same way and its sums are all-reduced (`reduce_sum`).
- Only rank 0 writes TensorBoard, checkpoints, metrics.json and the terminal lines; every rank reads a
  checkpoint to resume. A stop (Ctrl-C, SIGTERM) is agreed on after every batch (`agree`), so all ranks
  save and stop at the same batch.
- Local learning rules (STDP, DPP, ...) update weights from their own shard without gradients; they are
  refused in one line rather than letting the ranks' weights drift apart.
"""

# ruff: noqa: PLC0415  (torch is imported in the functions that use it: `dendsn --help` imports this module)
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional

from ..errors import UserError

if TYPE_CHECKING:
    import torch


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside it."""

    def get(name: str, default: int) -> int:
        try:
            return int(os.environ.get(name, default))
        except ValueError:
            return default

    return get("RANK", 0), get("WORLD_SIZE", 1), get("LOCAL_RANK", 0)


def wanted() -> bool:
    """Was this process started by torchrun (or another launcher) as one of several ranks?"""
    return env_world()[1] > 1


def active() -> bool:
    import torch

    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


def rank() -> int:
    import torch

    return torch.distributed.get_rank() if active() else 0


def world_size() -> int:
    import torch

    return torch.distributed.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def init(device: str) -> str:
    """Join the process group: NCCL when ``device`` is a GPU (device=cuda/auto with CUDA), else gloo.
    Returns the backend. Idempotent."""
    import torch

    if active():
        return torch.distributed.get_backend()
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if cuda and torch.distributed.is_nccl_available() else "gloo"
    if cuda:
        local, count = env_world()[2], torch.cuda.device_count()
        if local >= count:
            raise UserError(
                f"process {env_world()[0]} wants GPU {local} (LOCAL_RANK) but {count} are visible: start at "
                f"most {count} processes per machine (--nproc_per_node={count}), or use device=cpu"
            )
        torch.cuda.set_device(local)
    torch.distributed.init_process_group(backend=backend)
    return backend


def device_for(device: torch.device) -> torch.device:
    """A CUDA device becomes this rank's own GPU (LOCAL_RANK)."""
    import torch

    if active() and device.type == "cuda":
        return torch.device("cuda", env_world()[2])
    return device


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    import torch

    if not active():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the ranks (a new tensor; ``t`` itself outside a process group)."""
    return _all_reduce(t, "SUM")


def reduce_max(t: torch.Tensor) -> torch.Tensor:
    """The elementwise maximum of ``t`` over the ranks (``t`` itself outside a process group)."""
    return _all_reduce(t, "MAX")


def _all_reduce(t: torch.Tensor, op: str) -> torch.Tensor:
    import torch

    if not active():
        return t
    out = t.clone()
    if out.device.type == "cpu" and torch.distributed.get_backend() == "nccl":
        out = out.cuda()
    torch.distributed.all_reduce(out, op=getattr(torch.distributed.ReduceOp, op))
    return out.to(t.device)


def total(count: int, device: torch.device) -> int:
    """The sum of an integer count over the ranks."""
    import torch

    if not active():
        return count
    return int(reduce_sum(torch.tensor([float(count)], device=device)).item())


def agree(flag: bool, device: torch.device) -> bool:
    """True on every rank when any rank's ``flag`` is true (one tiny all-reduce)."""
    import torch

    if not active():
        return flag
    return bool(reduce_sum(torch.tensor([1.0 if flag else 0.0], device=device)).item() > 0)


def shard(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """This rank's contiguous part of a global batch: (x, y, samples it counts, loss scale). A rank whose
    part is empty (a last batch smaller than the world) trains on the batch's first sample with loss
    scale 0, so every rank still joins the gradient all-reduce; it counts 0 samples."""
    if not active():
        return x, y, y.shape[0], 1.0
    xr, yr = part(x, y)
    if yr.shape[0] == 0:
        return x[:1], y[:1], 0, 0.0
    return xr, yr, yr.shape[0], yr.shape[0] * world_size() / y.shape[0]


def part(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's contiguous part of a batch (possibly empty); the whole batch outside a process group."""
    if not active():
        return x, y
    return x.tensor_split(world_size())[rank()], y.tensor_split(world_size())[rank()]


def wrap(model: torch.nn.Module, device: torch.device) -> Optional[torch.nn.Module]:
    """The DistributedDataParallel wrapper that trains ``model`` (None outside a process group)."""
    if not active():
        return None
    import warnings

    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    with warnings.catch_warnings():  # torch 2.14 renames broadcast_buffers; False still means: not synced
        warnings.simplefilter("ignore", FutureWarning)
        return DDP(model, device_ids=ids, broadcast_buffers=False)


def barrier() -> None:
    import torch

    if active():
        torch.distributed.barrier()


def close() -> None:
    import torch

    if active():
        torch.distributed.destroy_process_group()
