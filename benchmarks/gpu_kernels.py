"""Where a fixed-step sampler's time goes on a GPU, kernel by kernel.

    python benchmarks/gpu_kernels.py [--batch 10000] [--steps 100] [--out DIR]

For the `lax.scan` reference and the library's `ReverseSDE(Euler)` and `Langevin`, and for
hand-written variants that change one thing at a time (per-sample noise keys, the batched
score), it prints the median wall time of a call and, read with PyTorch's profiler (CUPTI
records every kernel the process launches, JAX's included), the kernels one call runs:
how many, their summed GPU time, and the costliest by name. Wall time minus kernel time is
what the GPU spends waiting: launches, host synchronisation, host work. `sample()` is timed
twice, as called and inside a `jax.jit` closure (its host-side work gone).

Writes `kernels.json` and `hlo.txt` (the optimised HLO of each case) to `--out`.
Needs a CUDA build of PyTorch for the kernel counts; elsewhere it reports wall times only.
"""

import argparse
import json
import pathlib
from collections import Counter, defaultdict

import diffrax as dfx
import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.random as jr
from _common import environment, timing
from _references import scan_euler_maruyama

import scoresde as sd
from scoresde._sharding import fold_in_keys


def euler_loop(sde, net, shape, steps, key, per_sample_noise: bool):
    """The reference loop, with its noise drawn either as one batched normal per step
    (the reference) or per sample from `fold_in(fold_in(key, i), step)` (the library's
    reproducibility contract)."""
    ts = jnp.linspace(sde.T, sde.default_eps, steps + 1)
    key_x, key_w = jr.split(key)
    x = jr.normal(key_x, shape)
    keys = fold_in_keys(key_w, shape[0], None)
    batched = jax.vmap(net, in_axes=(None, 0))

    def noise(i):
        if per_sample_noise:
            return jax.vmap(lambda k: jr.normal(jr.fold_in(k, i), shape[1:]))(keys)
        return jr.normal(jr.fold_in(key_w, i), shape)

    def body(x, i):
        t, dt = ts[i], ts[i + 1] - ts[i]
        beta = sde.beta(t)
        drift = -0.5 * beta * x - beta * batched(t, x)
        return x + drift * dt + jnp.sqrt(beta * -dt) * noise(i), None

    return lax.scan(body, x, jnp.arange(steps))[0]


def cases(sde, net, shape, steps):
    euler = sd.ReverseSDE(dfx.Euler(), num_steps=steps)
    langevin = sd.Langevin(num_steps=steps, step_size=1e-3)

    def jitted_sample(sampler):
        return eqx.filter_jit(lambda net, k: sd.sample(sde, net, sampler, shape, key=k))

    return {
        "reference lax.scan": eqx.filter_jit(
            lambda net, k: scan_euler_maruyama(sde, net, shape, steps, k)
        ),
        "reference, per-sample noise keys": eqx.filter_jit(
            lambda net, k: euler_loop(sde, net, shape, steps, k, per_sample_noise=True)
        ),
        "reference, batched noise (check)": eqx.filter_jit(
            lambda net, k: euler_loop(sde, net, shape, steps, k, per_sample_noise=False)
        ),
        "sample() ReverseSDE Euler": lambda net, k: sd.sample(sde, net, euler, shape, key=k),
        "sample() ReverseSDE Euler, in jit": jitted_sample(euler),
        "sample() Langevin": lambda net, k: sd.sample(sde, net, langevin, shape, key=k),
        "sample() Langevin, in jit": jitted_sample(langevin),
    }


def kernel_profile(fn, args, calls: int) -> dict | None:
    """Kernels per call, read with PyTorch's CUPTI profiler; `None` without CUDA torch."""
    try:
        import torch
        from torch.profiler import profile, ProfilerActivity
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            jax.block_until_ready(fn(*args))
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    count, total = Counter(), defaultdict(float)
    for e in events:
        count[e.name] += 1
        total[e.name] += e.time_range.elapsed_us()
    top = sorted(total, key=total.get, reverse=True)[:10]
    return {
        "kernels_per_call": len(events) / calls,
        "gpu_us_per_call": sum(total.values()) / calls,
        "memcpy_per_call": sum(n for k, n in count.items() if "Memcpy" in k) / calls,
        "top": [
            {"name": k[:120], "per_call": count[k] / calls, "us_per_call": total[k] / calls}
            for k in top
        ],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("."))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    sde = sd.VPSDE()
    net = sd.NoisePrediction(sd.nn.TimeMLP(2, key=jr.key(0)), sde)
    shape = (args.batch, 2)
    call_args = (net, jr.key(1))
    results, hlo = {"environment": environment(), "args": vars(args) | {"out": None}}, []
    results["cases"] = {}
    for name, fn in cases(sde, net, shape, args.steps).items():
        ms = timing(fn, *call_args, repeats=args.repeats)["median_s"] * 1e3
        prof = kernel_profile(fn, call_args, calls=3)
        results["cases"][name] = {"wall_ms": ms, "kernels": prof}
        line = f"{name:40s} wall {ms:8.3f} ms"
        if prof:
            line += (
                f"  kernels/call {prof['kernels_per_call']:7.1f}"
                f"  GPU {prof['gpu_us_per_call'] / 1e3:7.3f} ms"
                f"  memcpy/call {prof['memcpy_per_call']:5.1f}"
            )
        print(line, flush=True)
        if prof:
            for k in prof["top"][:6]:
                print(f"      {k['per_call']:6.1f}x {k['us_per_call']:9.1f} us  {k['name']}")
        if hasattr(fn, "lower"):
            hlo.append(f"==== {name}\n" + fn.lower(*call_args).compile().compiled.as_text())
    (args.out / "kernels.json").write_text(json.dumps(results, indent=2))
    (args.out / "hlo.txt").write_text("\n".join(hlo))


if __name__ == "__main__":
    main()
