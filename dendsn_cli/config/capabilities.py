"""Declared capabilities: the rules between groups read what the chosen classes declare, never their class
paths, so a user's own dataset, encoder, network, neuron, read-out or learning rule passes and fails them
exactly as the built-in ones do. The class is found from the node's ``_target_`` and imported, not built.

What a class declares (class attributes; a subclass inherits them):

    dataset   provides: str          what a sample is: "images" (static values in [0, 1], [N, ...]),
                                     "spike_trains" (time-major spikes [N, T, C]) or "event_frames"
                                     (time-major event counts [N, T, ...]). A dataset node whose
                                     ``sequential`` key is set (not none) provides "sequences" (time-major
                                     analog values, e.g. image rows).
    encoder   accepts: tuple[str]    the kinds above that it encodes; one that declares nothing is taken to
                                     accept all but event frames
              name: str              how messages name it (else its class path)
    network, neuron, encoder, learning
              event_based: bool      a part of the event-driven network (spikegd: continuous spike times, not
                                     [T, B, ...] steps); the parts go together, on static images
    readout   event_readout: bool    scores the event network's output spike times

Library classes (models/, which knows nothing of the runner) that cannot declare are listed in LIBRARY,
by class: a subclass of one inherits its entry.
"""

from __future__ import annotations

import inspect

from omegaconf import DictConfig

from ..errors import UserError
from .options import choice_name
from .signature import locate

IMAGES, SPIKE_TRAINS, EVENT_FRAMES, SEQUENCES = "images", "spike_trains", "event_frames", "sequences"
UNDECLARED_ACCEPTS = (IMAGES, SPIKE_TRAINS, SEQUENCES)

#: Declarations of classes that do not carry them: {class path: {attribute: value}}.
LIBRARY = {
    "dendsn.events.EventMLP": {"event_based": True},
    "dendsn.events.Theta": {"event_based": True},
    "dendsn.events.QIFExp": {"event_based": True},
    "dendsn_cli.learning.ExactGradient": {"event_based": True},
}

#: The event network's options, for the line that says what to use together.
EVENT_GROUPS = ("network", "neuron", "encoder", "learning")
EVENT_METHOD = "network=event_mlp neuron=theta encoder=binned_latency learning=exact readout=first_spike"


def _resolve(target: str):
    try:
        return locate(target)
    except Exception:
        return None


def declared(node, name: str, default=None):
    """What the class of ``node``'s ``_target_`` declares as ``name`` (LIBRARY for library classes), else
    ``default`` (also for a node without a target)."""
    if not isinstance(node, DictConfig) or node.get("_target_") is None:
        return default
    obj = _resolve(str(node.get("_target_")))
    if obj is None:
        return default
    if hasattr(obj, name):
        return getattr(obj, name)
    for path, caps in LIBRARY.items():
        base = _resolve(path) if name in caps else None
        if inspect.isclass(obj) and inspect.isclass(base) and issubclass(obj, base):
            return caps[name]
    return default


def provides(dataset: DictConfig) -> str | None:
    """The kind of input a dataset node gives (see the module docstring); None when it declares none."""
    if dataset.get("sequential") not in (None, "none"):
        return SEQUENCES
    return declared(dataset, "provides")


def check_inputs(cfg: DictConfig) -> None:
    """The encoder must accept what the dataset provides. Event frames already are each step's input (event
    counts); row sequences are analog values fed as currents: encoder=direct passes them on as they are and
    encoder=delta spikes where they change, while the others would read them as spikes (poisson, poisson_hz
    pass time-major data through) or need static inputs. An event-based encoder on sequences is left to
    `check_events`. Spike trains are checked by the encoders themselves (at the first batch)."""
    dataset, encoder = cfg.get("dataset"), cfg.get("encoder")
    if not isinstance(dataset, DictConfig) or not isinstance(encoder, DictConfig):
        return
    kind = provides(dataset)
    if kind not in (EVENT_FRAMES, SEQUENCES) or kind in declared(encoder, "accepts", UNDECLARED_ACCEPTS):
        return
    shown = declared(encoder, "name", None) or str(encoder.get("_target_"))
    if kind == EVENT_FRAMES:
        raise UserError(
            f"encoder={shown} does not apply to dataset={dataset.get('name')}: its "
            "frames already are each time step's input (event counts); use encoder=direct"
        )
    if not declared(encoder, "event_based", False):
        raise UserError(
            f"encoder={shown} does not apply to dataset.sequential={dataset.get('sequential')}: each "
            "step's row of analog pixel values is the input current; use encoder=direct (or encoder=delta)"
        )


def check_events(cfg: DictConfig) -> None:
    """The event network (spikegd) is one method: its event-based network, neuron (theta or qif_exp), encoder
    (binned_latency) and learning rule (exact), with readout=first_spike, go together, on static images, in
    float32; any of them with another group's clock-driven option is refused in one line that names what to add."""
    chosen = {g: bool(declared(cfg.get(g), "event_based", False)) for g in EVENT_GROUPS}
    if not any(chosen.values()):
        return
    present = [f"{g}={choice_name(cfg, g)}" for g, on in chosen.items() if on]
    missing = [g for g, on in chosen.items() if not on]
    if missing:
        shown = ", ".join(f"{g}={choice_name(cfg, g)}" for g in missing)
        raise UserError(
            f"{' '.join(present)} belongs to the event-driven theta network (exact gradients, spikegd), "
            f"which does not run with {shown}: use {EVENT_METHOD} together (neuron=qif_exp for QIF "
            "neurons with a synaptic current), or experiment=fmnist_exact"
        )
    readout = cfg.get("readout")
    if not declared(readout, "event_readout", False):
        name = choice_name(cfg, "readout") if isinstance(readout, DictConfig) else "null"
        raise UserError(
            f"readout={name} does not apply to the event network, whose outputs are spike times; "
            "use readout=first_spike"
        )
    if readout.get("silent_time") is not None:
        raise UserError(
            f"readout.silent_time={readout.silent_time} does not apply to the event network: an output "
            "that never fires gets its pseudospike time; drop the override"
        )
    if cfg.amp != "none":
        raise UserError(
            f"amp={cfg.amp} does not apply to learning=exact: the event simulation needs float32 phases "
            "near the threshold; use amp=none"
        )
    dataset = cfg.get("dataset")
    if isinstance(dataset, DictConfig) and provides(dataset) != IMAGES:
        raise UserError(
            f"dataset={choice_name(cfg, 'dataset')} does not apply to the event network: its input coding "
            "(encoder=binned_latency) bins the pixels of static images; use dataset=mnist or fashion_mnist"
        )
