"""Shared pieces of the benchmark scripts: a timer and the environment record."""

import datetime
import os
import platform
import statistics
import sys
import time

import jax


def time_call(fn, *args, repeats: int = 5):
    """(compile + first run seconds, median seconds of `repeats` warm runs)."""
    record = timing(fn, *args, repeats=repeats)
    return record["first_s"], record["median_s"]


def timing(fn, *args, repeats: int = 5, wait=jax.block_until_ready) -> dict:
    """`time_call` as a record: the first (compiling) call, the median of `repeats` warm
    calls, each warm run, and `compile_s = first_s - median_s` (what the first call spent
    on tracing and compilation, the run itself subtracted). `wait(output)` blocks until
    the work is done (JAX's default; PyTorch passes a CUDA synchronise)."""
    t0 = time.perf_counter()
    wait(fn(*args))
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        wait(fn(*args))
        runs.append(time.perf_counter() - t0)
    median = statistics.median(runs)
    return {
        "first_s": first,
        "median_s": median,
        "compile_s": max(first - median, 0.0),
        "runs_s": runs,
        "repeats": repeats,
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


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
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "load_average": load_average(),
    }


__all__ = ["environment", "load_average", "time_call", "timing"]
