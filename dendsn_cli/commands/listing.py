"""`dendsn list [GROUP]` and the text of `dendsn train --help`: read from conf/ (each option's first
comment line, each root key's comment), nothing heavy imported."""

from __future__ import annotations

import re
from importlib import resources

from ..config import compose
from .outcome import fail

GROUP_HELP = {
    "dataset": "the data and its splits (train / validation / test); sets its own T",
    "encoder": "how a sample becomes input spikes or currents [T, B, ...]",
    "network": "the architecture (network.hidden, network.channels, the read-out neuron)",
    "synapse": "how layers connect: plain, masked (sparsity), exp filter (tau_s), weight bounds, Dale's law",
    "neuron": "the neuron model of the hidden layers, point or dendritic",
    "wiring": "the morphology of a dendritic neuron (dendritic neurons only)",
    "readout": "how the answer is read from the output layer: the loss and the prediction rule",
    "learning": "the learning rule: surrogate-gradient BPTT or a local plasticity rule",
    "optim": "the optimizer of what learns by gradient (optim.lr, optim.weight_decay)",
    "logger": "what goes to TensorBoard (histograms, pictures, how often)",
    "experiment": "presets that set several groups at once (the README's figures)",
    "stimulus": "dendsn simulate only: what drives the neurons (not a group of train)",
}


def groups() -> dict[str, list[tuple[str, str]]]:
    """Every config group (nested ones as 'neuron/soma') -> [(option, its description)]: the first
    comment line of the option's file, or of the option it reuses (``/group@_here_: option``)."""
    root = resources.files("dendsn_conf")

    def describe(f) -> str:
        lines = f.read_text().splitlines()
        comments = [ln for ln in lines if ln.startswith("#") and "@package" not in ln]
        if comments:
            return comments[0].lstrip("# ").strip()
        reused = [ln.split("@_here_:") for ln in lines if "@_here_:" in ln]
        if reused:
            group, option = reused[0][0].strip(" -/"), reused[0][1].strip()
            target = root.joinpath(*group.split("/"), f"{option}.yaml")
            return describe(target) if target.is_file() else ""
        return ""

    out: dict[str, list[tuple[str, str]]] = {}

    def walk(folder, name: str) -> None:
        options = [
            (f.name[:-5], describe(f))
            for f in sorted(folder.iterdir(), key=lambda p: p.name)
            if f.name.endswith(".yaml")
        ]
        if options:
            out[name] = options
        for sub in sorted(
            (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("_")), key=lambda p: p.name
        ):
            walk(sub, f"{name}/{sub.name}")

    for group in sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "hydra"))):
        walk(root.joinpath(group), group)
    return out


def default_choices() -> dict:
    cfg = compose([], return_hydra_config=True)
    return dict(cfg.hydra.runtime.choices)


def command(args: list[str]) -> None:
    """`dendsn list [GROUP ...]`."""
    found = groups()
    if args:
        unknown = [a for a in args if a not in found]
        if unknown:
            fail(f"no config group {unknown[0]!r}; groups: {', '.join(found)}")
        found = {a: found[a] for a in args}
    defaults = default_choices()
    for group, options in found.items():
        print(f"{group}:")
        for name, desc in options:
            mark = "*" if defaults.get(group) == name else " "
            print(f"  {mark} {name:<18} {desc}")
    print("(* = default)")


def root_key_help() -> list[tuple[str, str]]:
    """(key, its comment in conf/train.yaml) for every root key, in the file's order."""
    text = resources.files("dendsn_conf").joinpath("train.yaml").read_text()
    out, prefix = [], ""
    for line in text.split("hydra:")[0].splitlines():
        m = re.match(r"^(\s*)([A-Za-z_]+):\s*([^#]*?)\s*(?:#\s*(.*))?$", line)
        if not m or line.lstrip().startswith("-") or m.group(2) == "defaults":
            continue
        indent, key, value, comment = m.groups()
        if not indent:
            prefix = key + "." if not value else ""
            if value:
                out.append((key, f"{comment or ''} (default: {value})".strip()))
        elif prefix:
            out.append((prefix + key, f"{comment or ''} (default: {value})".strip()))
    return out


def train_help() -> str:
    """`dendsn train --help`: one line per config group (its options) and per root key."""
    found, defaults = groups(), default_choices()
    lines = [
        "usage: dendsn train [GROUP=OPTION | KEY=VALUE ...] [-m] [--cfg job] [--help]",
        "",
        "Train a spiking network. Pick options with GROUP=OPTION, set keys with KEY=VALUE (any key of the",
        "composed config, e.g. neuron.tau=4 optim.lr=0.01), sweep with -m; `dendsn list` describes every option.",
        "",
        "config groups (* = default):",
    ]
    for group, options in found.items():
        names = ", ".join(f"{n}*" if defaults.get(group) == n else n for n, _ in options)
        lines.append(f"  {group}: {names}")
        if group in GROUP_HELP:
            lines.append(f"      {GROUP_HELP[group]}")
    lines += ["", "root keys:"]
    width = max(len(k) for k, _ in root_key_help())
    lines += [f"  {k:<{width}}  {d}" for k, d in root_key_help()]
    lines += [
        "",
        "examples:",
        "  dendsn train neuron=lif epochs=3                  one run",
        "  dendsn train -m neuron=lif,dend_lif seed=0,1      a sweep: a table of its jobs at the end",
        "  dendsn train -m hydra/sweeper=optuna 'optim.lr=interval(0.001,0.03)'   an Optuna study",
        "  dendsn train --cfg job neuron=if                  print the composed config, run nothing",
        "",
        "Runs go to outputs/<date>/<time>/ (sweeps to outputs/multirun/); watch them with: tensorboard --logdir outputs",
    ]
    return "\n".join(lines)
