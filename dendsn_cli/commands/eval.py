"""`dendsn eval ckpt=PATH [KEY=VALUE ...]`: the config the checkpoint was trained with (plus the user's
overrides), composed and validated as `dendsn train` does, then the test split's accuracy and loss."""

from __future__ import annotations

from ..config import compose, validate
from ..runs import checkpoint
from ..train import evaluate_checkpoint
from .outcome import fail

USAGE = (
    "usage: dendsn eval ckpt=PATH [KEY=VALUE ...]\n"
    "Composes the config the checkpoint was trained with (plus your overrides, e.g. device=cpu),\n"
    "loads its weights and prints test accuracy and loss."
)


def command(args: list[str]) -> None:
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return
    value = next((a.split("=", 1)[1] for a in args if a.startswith("ckpt=")), None)
    if value is None:
        fail("dendsn eval needs ckpt=PATH (a checkpoint file or a run dir)")
    path = checkpoint.find(value, "ckpt")
    ck = checkpoint.load(path, "ckpt")
    user = [a for a in args if not a.startswith("ckpt=")]
    cfg = compose(checkpoint.check_overrides(ck["overrides"], user, path, "ckpt"))
    validate(cfg)
    r = evaluate_checkpoint(cfg, path, ck)
    print(
        f"dendsn eval: {path} (epoch {r['epoch']}) | test acc {r['test_acc']:.2%} | "
        f"test loss {r['test_loss']:.4f} | {r['n_test']} samples"
    )
