"""Part 1 and 2 of `run.py`: sampling throughput of every sampler, and the references
(`lax.scan`, the virtual Brownian tree, diffusionjax, PyTorch) measured in the same run."""

import traceback

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from _common import timing
from _references import diffusionjax_sampler, scan_euler_maruyama, unrolled_euler_maruyama

import scoresde as sd


SCAN = "lax.scan Euler-Maruyama (reference)"
UNROLLED = "unrolled Euler-Maruyama (Python loop in one jit)"
EULER = "ReverseSDE Euler"
EULER_TREE = "ReverseSDE Euler, brownian='tree'"
DIFFUSIONJAX = "diffusionjax EulerMaruyama"
TORCH = "PyTorch loop"

# (name, whether its step count is fixed) in the order of the tables.
SAMPLER_NAMES = (
    EULER,
    EULER_TREE,
    "ReverseSDE Heun",
    "ReverseSDE Heun adaptive",
    "PF-ODE Heun",
    "PF-ODE Tsit5 adaptive",
    "Langevin",
    "AnnealedLangevin",
    "PredictorCorrector",
)


def throughput_sampler(name: str, steps: int) -> sd.AbstractSampler:
    """The samplers of the throughput tables. The fixed-step ones take `steps` score
    evaluations (Heun: 2 per step, so `steps` steps cost `2 steps`); the adaptive ones as
    many as their controller asks for (recorded per run)."""
    half = max(steps // 2, 1)
    return {
        EULER: lambda: sd.ReverseSDE(dfx.Euler(), num_steps=steps),
        EULER_TREE: lambda: sd.ReverseSDE(dfx.Euler(), num_steps=steps, brownian="tree"),
        "ReverseSDE Heun": lambda: sd.ReverseSDE(dfx.Heun(), num_steps=steps),
        "ReverseSDE Heun adaptive": lambda: sd.ReverseSDE(
            dfx.Heun(),
            stepsize_controller=dfx.PIDController(rtol=1e-2, atol=1e-2),
            brownian="tree",
        ),
        "PF-ODE Heun": lambda: sd.ProbabilityFlowODE(dfx.Heun(), num_steps=steps),
        "PF-ODE Tsit5 adaptive": lambda: sd.ProbabilityFlowODE(
            dfx.Tsit5(), stepsize_controller=dfx.PIDController(rtol=1e-3, atol=1e-3)
        ),
        "Langevin": lambda: sd.Langevin(num_steps=steps, step_size=1e-4),
        "AnnealedLangevin": lambda: sd.AnnealedLangevin(
            num_levels=half, steps_per_level=max(steps // half, 1), step_size=1e-5
        ),
        # One predictor and one corrector evaluation per step.
        "PredictorCorrector": lambda: sd.PredictorCorrector(num_steps=half),
    }[name]()


def _row(name, kind, batch, steps, t, evals_mean, evals_max, **extra) -> dict:
    median = t["median_s"]
    return {
        "name": name,
        "kind": kind,
        "batch": batch,
        "num_steps": steps,
        "score_evals_mean": float(evals_mean),
        "score_evals_max": float(evals_max),
        **t,
        "samples_per_s": batch / median,
        "us_per_score_eval": 1e6 * median / (batch * float(evals_mean)),
        **extra,
    }


def _error_row(name, kind, batch, steps, err) -> dict:
    return {"name": name, "kind": kind, "batch": batch, "num_steps": steps, "error": err}


def _safe(name, kind, batch, steps, fn, log):
    try:
        return fn()
    except Exception as e:  # a failure is recorded and the run goes on
        log(f"    {name} failed: {type(e).__name__}: {e}")
        tb = traceback.format_exc(limit=3)
        return _error_row(name, kind, batch, steps, f"{type(e).__name__}: {e}\n{tb}"[-2000:])


def run_throughput(
    net,
    data_shape: tuple[int, ...],
    *,
    batches,
    steps: int,
    repeats,
    samplers,
    diffusionjax: bool,
    torch_status: dict | None,
    max_batch: dict | None = None,
    unrolled_reference: bool = False,
    log=print,
) -> dict:
    """Times every sampler in `samplers` and the references at each batch size.

    `repeats` is an int, or a dict from batch size to int. `torch_status` is
    `_torch_ref.status(...)` (or None to leave PyTorch out, e.g. for images). `max_batch`
    maps a sampler to the largest batch it is run at (to keep the quick run quick).
    `unrolled_reference` adds the same Euler–Maruyama loop unrolled in Python under one
    `jax.jit` (no XLA while loop): on CPU, XLA runs convolutions inside a loop body
    several times slower than outside one (jax-ml/jax#12868), and this shows it.
    """
    max_batch = max_batch or {}
    sde = sd.VPSDE(beta_min=0.1, beta_max=20.0)
    key = jr.key(1)
    rows = []
    for batch in batches:
        reps = repeats[batch] if isinstance(repeats, dict) else repeats
        shape = (batch, *data_shape)
        log(f"  batch {batch}, {steps} steps, {reps} repeats")

        references = [(SCAN, scan_euler_maruyama)]
        if unrolled_reference:
            references.append((UNROLLED, unrolled_euler_maruyama))
        for ref_name, loop in references:
            fn = eqx.filter_jit(
                lambda net, k, loop=loop, shape=shape: loop(sde, net, shape, steps, k)
            )

            def time_ref(fn=fn, ref_name=ref_name, batch=batch, reps=reps):
                t = timing(fn, net, key, repeats=reps)
                return _row(ref_name, "reference", batch, steps, t, steps, steps)

            rows.append(_safe(ref_name, "reference", batch, steps, time_ref, log))
            log(f"    {ref_name}: {rows[-1].get('median_s', float('nan')):.4f} s")

        for name in samplers:
            if batch > max_batch.get(name, batch):
                continue
            sampler = throughput_sampler(name, steps)

            def call(k, sampler=sampler, shape=shape):
                return sd.sample(sde, net, sampler, shape, key=k, return_info=True)

            def time_lib(call=call, name=name, batch=batch, reps=reps):
                t = timing(call, key, repeats=reps)
                evals = np.asarray(call(key).stats["num_score_evals"])
                fixed = getattr(throughput_sampler(name, steps), "stepsize_controller", None)
                return _row(
                    name,
                    "library",
                    batch,
                    steps if fixed is None else None,
                    t,
                    evals.mean(),
                    evals.max(),
                )

            rows.append(_safe(name, "library", batch, steps, time_lib, log))
            log(f"    {name}: {rows[-1].get('median_s', float('nan')):.4f} s")

        if diffusionjax:
            fn = diffusionjax_sampler(net, shape, steps)

            def time_dj(fn=fn, batch=batch, reps=reps):
                t = timing(fn, net, key, repeats=reps)
                return _row(DIFFUSIONJAX, "reference", batch, steps, t, steps, steps)

            rows.append(_safe(DIFFUSIONJAX, "reference", batch, steps, time_dj, log))
            log(f"    {DIFFUSIONJAX}: {rows[-1].get('median_s', float('nan')):.4f} s")

        if torch_status is not None and torch_status["status"] == "ok":
            import _torch_ref

            def time_torch(batch=batch, reps=reps):
                t = _torch_ref.time_sampling(net, batch, steps, reps, device=torch_status["device"])
                return _row(TORCH, "reference", batch, steps, t, steps, steps)

            rows.append(_safe(TORCH, "reference", batch, steps, time_torch, log))
            log(f"    {TORCH}: {rows[-1].get('median_s', float('nan')):.4f} s")

    _add_ratios(rows)
    return {
        "config": {
            "data_shape": list(data_shape),
            "batches": list(batches),
            "num_steps": steps,
            "repeats": repeats
            if isinstance(repeats, int)
            else {str(k): v for k, v in repeats.items()},
            "sde": "VPSDE(beta_min=0.1, beta_max=20.0)",
        },
        "rows": rows,
    }


def _add_ratios(rows):
    """Each row against the `lax.scan` reference at the same batch: wall time, and time per
    score evaluation (which puts samplers of different step counts on one scale); the tree
    path also against the default grid path."""
    by = {(r["name"], r["batch"]): r for r in rows if "error" not in r}
    for r in rows:
        if "error" in r:
            continue
        ref = by.get((SCAN, r["batch"]))
        if ref is not None:
            r["time_ratio_to_scan"] = r["median_s"] / ref["median_s"]
            r["per_eval_ratio_to_scan"] = r["us_per_score_eval"] / ref["us_per_score_eval"]
        unrolled = by.get((UNROLLED, r["batch"]))
        if unrolled is not None:
            r["time_ratio_to_unrolled"] = r["median_s"] / unrolled["median_s"]
        grid = by.get((EULER, r["batch"]))
        if r["name"] == EULER_TREE and grid is not None:
            r["time_ratio_to_grid"] = r["median_s"] / grid["median_s"]


def untrained_unet(data_shape, seed: int = 0, **kwargs):
    """`scoresde.nn.UNet(data_shape, **kwargs)` with its parameters drawn by NumPy.

    Building the U-Net with JAX's own initialisers takes 13-16 s on 2 CPU cores (each of its
    ~50 `jax.random.uniform` calls compiles a program for its shape), more than everything
    else the quick run does with it. The timings do not depend on the values, so the network
    is built by shape only (`eqx.filter_eval_shape`) and filled here: weights uniform in
    +-1/sqrt(fan_in) (Equinox's default), biases 0, 1-D scales (GroupNorm) 1."""
    abstract = eqx.filter_eval_shape(lambda: sd.nn.UNet(data_shape, key=jr.key(0), **kwargs))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            return leaf
        name = getattr(path[-1], "name", "")
        if leaf.ndim >= 2:
            bound = 1 / np.sqrt(np.prod(leaf.shape[1:]))
            value = rng.uniform(-bound, bound, leaf.shape)
        elif name == "weight":
            value = np.ones(leaf.shape)
        else:
            value = np.zeros(leaf.shape)
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(
        fill, abstract, is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct)
    )


__all__ = ["SAMPLER_NAMES", "run_throughput", "throughput_sampler", "untrained_unet"]


if __name__ == "__main__":  # a quick look: python benchmarks/_sampling_bench.py
    jax.config.update("jax_default_matmul_precision", "default")
    out = run_throughput(
        sd.nn.TimeMLP(2, key=jr.key(0)),
        (2,),
        batches=[1000],
        steps=20,
        repeats=2,
        samplers=SAMPLER_NAMES,
        diffusionjax=True,
        torch_status=None,
    )
    for r in out["rows"]:
        print(r["name"], r.get("median_s"), r.get("time_ratio_to_scan"), jnp.nan)
