"""The peer side of bench.py's section 7: spikegd (JAX) on the same network, weights and inputs.

Run by bench.py as ``<peer python> benchmarks/spikegd_peer.py <spikegd checkout> <in.npz> <out.json>`` with a
Python that has jax and jaxtyping. It uses spikegd's own simulator (`ThetaNeuron.event`, `H`, `t_pseudo`,
from the checkout's `spikegd` package) and builds the feed-forward network the way the paper's MNIST
experiment does (block network matrix, one virtual input neuron per input time); it times
jit(value_and_grad(loss)) for the whole batch, and writes the output times for bench.py to compare.
"""

from __future__ import annotations

import json
import statistics
import sys
import time


def main(checkout: str, inp: str, out: str) -> None:
    sys.path.insert(0, checkout)
    import jax
    import jax.numpy as jnp
    import numpy as np
    from spikegd.theta import ThetaNeuron

    d = np.load(inp)
    tau, I0, T, K, repeats = (float(d["tau"]), float(d["I0"]), float(d["T"]), int(d["K"]), int(d["repeats"]))
    weights = [jnp.asarray(d[f"w{i}"]) for i in range(int(d["n_layers"]))]
    phi0 = jnp.asarray(d["phi0"])
    times_in = jnp.asarray(d["in_times"])  # [M] the distinct input times
    onehot = jnp.asarray(d["onehot"])  # [B, n_in, M]: which inputs spike at each time
    labels = jnp.asarray(d["labels"])
    neuron = ThetaNeuron(tau, I0, 1e-6)
    sizes = [w.shape[0] for w in weights]
    N, C = sum(sizes), sizes[-1]
    config = {"T": T, "K": K}
    M = times_in.shape[0]

    def forward(p, hot):
        ws, phi = p
        w_in = jnp.zeros((N, M)).at[: sizes[0]].set(ws[0] @ hot)  # virtual input neurons
        net = jnp.zeros((N, N))
        off = 0
        for i in range(len(ws) - 1):
            net = net.at[off + sizes[i] : off + sizes[i] + sizes[i + 1], off : off + sizes[i]].set(ws[i + 1])
            off += sizes[i]
        ts, spike_in, js, xs = neuron.event(phi[jnp.newaxis], net, w_in, (times_in, jnp.arange(M)), config)
        x_end = xs[jnp.sum(js >= 0)]
        rate, off = jnp.zeros(hot.shape[0]), 0
        for i in range(len(ws) - 1):
            drive = ws[i] @ rate
            rate = neuron.construct_ratefn(x_end[:, off : off + sizes[i]])(drive)
            off += sizes[i]
        drive = ws[-1] @ rate

        def t_out(c):
            mask = (js == N - C + c) & ~spike_in
            t_ord = ts[jnp.argmax(mask)]
            t_ps = neuron.t_pseudo(x_end[:, N - C + c], drive[c], 1, config)
            return jnp.where(jnp.any(mask), t_ord, t_ps)

        return jax.vmap(t_out)(jnp.arange(C)), jnp.sum(js >= 0)

    def loss(p, hot, y):
        t, used = jax.vmap(forward, in_axes=(None, 0))(p, hot)
        ce = -jax.nn.log_softmax(-t)[jnp.arange(y.shape[0]), y]
        return jnp.mean(ce + 0.01 * (jnp.exp(t[jnp.arange(y.shape[0]), y] / T) - 1)), (t, used)

    step = jax.jit(jax.value_and_grad(loss, has_aux=True))
    p = (weights, phi0)
    t0 = time.perf_counter()
    (value, (t, used)), grads = step(p, onehot, labels)
    jax.block_until_ready(grads)
    compile_s = time.perf_counter() - t0
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        (value, (t, used)), grads = step(p, onehot, labels)
        jax.block_until_ready(grads)
        samples.append(time.perf_counter() - t0)
    json.dump(
        {
            "ms": statistics.median(samples) * 1e3,
            "compile_s": compile_s,
            "t_out": np.asarray(t).tolist(),
            "events": int(np.asarray(used).sum()),
            "loss": float(value),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
        },
        open(out, "w"),
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
