"""Shared pieces of the benchmark scripts: a timer and the environment record."""

import datetime
import platform
import statistics
import time

import jax


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


__all__ = ["environment", "time_call"]
