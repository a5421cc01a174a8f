"""Every `neuron=` option (and neuron=dendritic with every soma, and a few variants) in a tiny network
built from the real composed config, seed-fixed: its state_dict keys and shapes, what each layer puts
out for a fixed input (train mode with gradients, then eval mode without), and the gradients of a fixed
loss with respect to the input and every parameter.

The network is the config's own (network=mlp, 5 inputs -> hidden [6] -> 3 classes, the config's T steps,
batch 2, every Linear's initial weights times GAIN),
instantiated as `dendsn train` does it (neuron and read-out as factories, the synapse group's synapse),
but without a dataset; the event neurons (theta, qif_exp) run in network=event_mlp on spike times.
"""

from __future__ import annotations

N_IN, HIDDEN, N_CLASSES, BATCH = (
    5,
    [6],
    3,
    2,
)  # and the config's T steps (the synthetic dataset's 20; psn's weight is T x T)
SLOW = {"hh": ["T=8"]}  # Hodgkin-Huxley: 20 Euler sub-steps a step: fewer steps
GAIN = 3.0  # every Linear's initial weights times GAIN, so that the read-out fires too
EVENT_NEURONS = ("theta", "qif_exp")
EVENT_NETWORK = ["network=event_mlp", "learning=exact", "encoder=binned_latency", "readout=first_spike"]

# (case name, overrides) beyond one per neuron option and one per soma: what the refactor of the
# dendritic neuron and the synapses touches
EXTRA = [
    *[
        (f"neuron=dend_lif wiring={w}", ["neuron=dend_lif", f"wiring={w}", "neuron.v_threshold=0.3"])
        for w in ("chain", "kto1", "tree")
    ],  # (a lower threshold: these fire on the tiny input)
    ("neuron=dend_lif bap_psi=0.5", ["neuron=dend_lif", "neuron.bap_psi=0.5"]),
    ("neuron=dend_lif firing=logistic", ["neuron=dend_lif", "neuron.firing.kind=logistic"]),
    (
        "neuron=dend_lif forward_mode=activation",
        ["neuron=dend_lif", "neuron.forward_mode=activation", "neuron.v_threshold=0.6"],
    ),
    ("neuron=dend_lif activation=sigmoid", ["neuron=dend_lif", "neuron.compartment.activation=sigmoid"]),
    ("neuron=dend_lif v_reset=null", ["neuron=dend_lif", "neuron.v_reset=null"]),
    ("neuron=dend_lif learn_g learn_phi", ["neuron=dend_lif", "neuron.learn_g=true", "neuron.learn_phi=true"]),
    ("neuron=dend_if wiring=tree", ["neuron=dend_if", "wiring=tree", "neuron.v_threshold=0.3"]),
    (
        "neuron=dendritic neuron/soma=psn activation",
        ["neuron=dendritic", "neuron/soma=psn", "neuron.forward_mode=activation"],
    ),
    ("neuron=dendritic bap_psi=0.5", ["neuron=dendritic", "neuron.bap_psi=0.5"]),
    (
        "neuron=dendritic neuron/soma=adex wiring=chain",
        ["neuron=dendritic", "neuron/soma=adex", "wiring=chain", "neuron.soma.v_threshold=0.5"],
    ),
    *[(f"neuron=lif synapse={s}", ["neuron=lif", f"synapse={s}"]) for s in ("bounded", "dale", "exp", "masked")],
    ("neuron=dend_lif synapse=exp", ["neuron=dend_lif", "synapse=exp"]),
    ("neuron=lif recurrent=true", ["neuron=lif", "network.recurrent=true", "network.recurrent_init=0.5"]),
    ("neuron=alif recurrent=inhibition", ["neuron=alif", "network.recurrent=inhibition"]),
]


def cases() -> dict[str, list[str]]:
    from .configs import options

    out = {}
    for n in options("neuron"):
        out[f"neuron={n}"] = [f"neuron={n}", *(EVENT_NETWORK if n in EVENT_NEURONS else []), *SLOW.get(n, [])]
    for s in options("neuron/soma"):
        out[f"neuron=dendritic neuron/soma={s}"] = ["neuron=dendritic", f"neuron/soma={s}", *SLOW.get(s, [])]
    out.update(dict(EXTRA))
    return out


def _build(cfg: dict):
    """(model, event network?) of the composed config ``cfg`` (plain data), seed 0."""
    import copy

    import torch
    from hydra.utils import instantiate

    cfg = copy.deepcopy(cfg)
    torch.manual_seed(0)
    neuron = instantiate(cfg["neuron"])
    net = cfg["network"]
    net["hidden"] = list(HIDDEN)
    readout = net.pop("readout", None)
    if readout is None:  # the event network: no read-out factory, no synapse
        net["K"] = 64
        return instantiate(net, input_shape=[N_IN], n_classes=N_CLASSES, neuron=neuron), True
    extra = {}
    if cfg.get("synapse") is not None:
        extra["synapse"] = instantiate(cfg["synapse"])
    model = instantiate(
        net, input_shape=[N_IN], n_classes=N_CLASSES, neuron=neuron, readout=instantiate(readout), **extra
    )
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(GAIN)
    return model, False


def _reset(model) -> None:
    if hasattr(model, "reset"):
        model.reset()


def probe(cfg: dict) -> tuple[dict, dict]:
    """(keys: {"state_dict": {key: shape}, "tensors": [names]}, tensors: {name: tensor}) for the composed
    config ``cfg``; ({"error": message}, {}) where building or running the network fails."""
    try:
        return _probe(cfg)
    except Exception as e:  # recorded as it is: the same failure must stay
        cause = e.__cause__ or e
        return {"error": f"{type(cause).__name__}: {cause}".splitlines()[0]}, {}


def _probe(cfg: dict) -> tuple[dict, dict]:
    import torch

    model, events = _build(cfg)
    keys = {"state_dict": {k: list(v.shape) for k, v in model.state_dict().items()}}
    g = torch.Generator().manual_seed(1234)
    if events:
        x = torch.rand(BATCH, N_IN, generator=g) * 1.5  # input spike times (no gradient: the simulator has none)
    else:
        x = (torch.rand(int(cfg["T"]), BATCH, N_IN, generator=g) * 3.0).requires_grad_(True)
    tensors = {"state_dict/" + k: v.detach().clone() for k, v in model.state_dict().items()}

    layers = list(model.layers) if hasattr(model, "layers") and not events else []
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o)) for n, m in enumerate(layers)]
    try:
        model.train()
        _reset(model)
        out = model(x)
        train_outs = {**{f"layer{n}": o for n, o in seen.items() if torch.is_tensor(o)}, "out": out}
        loss = sum((o.float() * torch.randn(o.shape, generator=g)).sum() for o in train_outs.values())
        params = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        inputs = [x] if x.requires_grad else []
        grads = torch.autograd.grad(loss, inputs + [p for _, p in params], allow_unused=True)
        tensors.update({f"train/{k}": v.detach().clone() for k, v in train_outs.items()})
        tensors["loss"] = loss.detach().clone()
        if inputs:
            tensors["grad/input"] = grads[0].clone()
        for (k, _), gr in zip(params, grads[len(inputs) :]):
            tensors[f"grad/{k}"] = gr.clone() if gr is not None else torch.tensor(float("nan"))
        for mode in ("eval", "eval_again"):  # twice: a cached fast path must give the same
            seen.clear()
            model.eval()
            _reset(model)
            with torch.no_grad():
                out = model(x.detach())
            outs = {**{f"layer{n}": o for n, o in seen.items() if torch.is_tensor(o)}, "out": out}
            tensors.update({f"{mode}/{k}": v.detach().clone() for k, v in outs.items()})
    finally:
        for h in hooks:
            h.remove()
    tensors = {
        k: v.bool() if is_spikes(v) and not k.startswith(("grad/", "state_dict/")) else v.contiguous()
        for k, v in tensors.items()
    }  # spikes kept as bool: a small golden file
    keys["tensors"] = sorted(tensors)
    return keys, tensors


def is_spikes(t) -> bool:
    import torch

    return t.dtype == torch.bool or (t.is_floating_point() and t.numel() > 0 and bool(((t == 0) | (t == 1)).all()))


def tensor_differences(golden: dict, current: dict, where: str) -> list[str]:
    """Spike tensors (only 0 and 1) and state_dict tensors exactly equal; others (potentials, times,
    gradients) allclose(rtol=1e-5, atol=1e-6)."""
    import torch

    out = []
    for k in sorted(set(golden) | set(current)):
        if k not in current or k not in golden:
            out.append(f"{where}: {k} {'missing' if k not in current else 'unexpected'}")
            continue
        a, b = golden[k], current[k]
        if a.shape != b.shape or a.dtype != b.dtype:
            out.append(f"{where}: {k} shape/dtype {tuple(a.shape)} {a.dtype} != {tuple(b.shape)} {b.dtype}")
        elif is_spikes(a) or k.startswith("state_dict/"):
            if not torch.equal(a, b):
                n = int((a != b).sum())
                out.append(f"{where}: {k} differs in {n} of {a.numel()} values (compared exactly)")
        elif not torch.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True):
            err = (a - b).abs().nan_to_num(float("inf")).max().item()
            out.append(f"{where}: {k} not allclose (max abs difference {err:.3g})")
    return out
