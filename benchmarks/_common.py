"""Shared pieces of the benchmark scripts: the seed-000 score network and a timer."""

import datetime
import platform
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr


class TimeMLP(eqx.Module):
    """Seed 000's `ApproximateScore`: (x, t - 1/2, cos 2πt) -> 3 x 256 ReLU -> score."""

    mlp: eqx.nn.MLP

    def __init__(self, dim: int, key, width: int = 256, depth: int = 3):
        self.mlp = eqx.nn.MLP(dim + 2, dim, width, depth, activation=jax.nn.relu, key=key)

    def __call__(self, t, x):
        feats = jnp.stack([t - 0.5, jnp.cos(2 * jnp.pi * t)]).astype(x.dtype)
        return self.mlp(jnp.concatenate([x, feats]))


def time_call(fn, *args, repeats: int = 5):
    """(compile + first run seconds, median seconds of `repeats` warm runs)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs)


def environment() -> dict:
    dev = jax.devices()[0]
    return {
        "device": dev.device_kind
        if dev.platform != "cpu"
        else f"cpu ({platform.processor() or platform.machine()})",
        "platform": dev.platform,
        "num_devices": jax.device_count(),
        "jax": jax.__version__,
        "date": datetime.date.today().isoformat(),
    }


__all__ = ["TimeMLP", "environment", "jr", "time_call"]
