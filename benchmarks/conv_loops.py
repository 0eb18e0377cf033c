"""What a convolution costs inside a loop body against outside one (jax-ml/jax#12868).

    python benchmarks/conv_loops.py [--batch 16] [--steps 10] [--train-batch 32]

1. One 3x3 convolution (32 -> 32 channels, 28x28) applied `--steps` times in a `lax.scan`
   and in the same steps unrolled, for each layout of input and kernel.
2. `scoresde.nn.UNet((1, 28, 28))` as a sampler uses it: `--steps` evaluations on
   `--batch` images, in a `lax.scan` and unrolled.
3. One `fit` step of that U-Net (denoising score matching, Adam, `--train-batch` images)
   with `steps_per_dispatch=1` (no loop) and 10 (a `lax.scan` over the steps): the time of
   a run of 10 more steps less that of one dispatch, per step.

Writes JSON to benchmarks/results/<platform>/conv_loops.json. On a GPU every pair costs
the same; on XLA:CPU only the NHWC input with an HWIO kernel is fast inside a loop.
"""

import argparse
import json
import pathlib
import time

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.random as jr
import optax
from _common import environment, timing
from _sampling_bench import untrained_unet

import scoresde as sd


def scan_and_unrolled(step, params, x, steps: int) -> dict:
    """`x = step(params, x, i)` `steps` times: in a `lax.scan`, and unrolled."""

    @eqx.filter_jit
    def scanned(params, x):
        return lax.scan(lambda x, i: (step(params, x, i), None), x, jnp.arange(steps))[0]

    @eqx.filter_jit
    def unrolled(params, x):
        for i in range(steps):
            x = step(params, x, jnp.asarray(i))
        return x

    scan_s = timing(scanned, params, x, repeats=3)["median_s"]
    unrolled_s = timing(unrolled, params, x, repeats=3)["median_s"]
    return {"scan_s": scan_s, "unrolled_s": unrolled_s, "ratio": scan_s / unrolled_s}


LAYOUTS = {  # input layout, kernel layout, the kernel's shape for 32 -> 32 channels
    "NHWC input, HWIO kernel": ("NHWC", "HWIO", (3, 3, 32, 32)),
    "NHWC input, OIHW kernel": ("NHWC", "OIHW", (32, 32, 3, 3)),
    "NCHW input, OIHW kernel": ("NCHW", "OIHW", (32, 32, 3, 3)),
}


def single_conv(batch: int, steps: int) -> dict:
    out = {}
    for name, (lhs, rhs, kernel_shape) in LAYOUTS.items():
        kernel = jr.normal(jr.key(0), kernel_shape) * 0.05
        x_shape = (batch, 28, 28, 32) if lhs == "NHWC" else (batch, 32, 28, 28)
        x = jr.normal(jr.key(1), x_shape)

        def step(kernel, x, i, lhs=lhs, rhs=rhs):
            y = lax.conv_general_dilated(
                x, kernel, (1, 1), "SAME", dimension_numbers=(lhs, rhs, lhs)
            )
            return x + 0.1 * y

        out[name] = scan_and_unrolled(step, kernel, x, steps)
        print(f"  conv, {name}: {out[name]}", flush=True)
    return out


def unet_sampling(batch: int, steps: int) -> dict:
    unet = untrained_unet((1, 28, 28))
    x = jr.normal(jr.key(0), (batch, 1, 28, 28))
    batched = jax.vmap(lambda net, t, x: net(t, x), in_axes=(None, None, 0))

    def step(net, x, i):
        return x + 0.01 * batched(net, 1.0 - i / steps, x)

    out = scan_and_unrolled(step, unet, x, steps)
    print(f"  U-Net evaluations: {out}", flush=True)
    return out


def unet_training(batch: int) -> dict:
    sde = sd.VPSDE()
    model = sd.NoisePrediction(untrained_unet((1, 28, 28)), sde)
    data = jr.uniform(jr.key(0), (4 * batch, 1, 28, 28))
    out = {}
    for per_dispatch in (1, 10):

        def train(num_steps, per_dispatch=per_dispatch):
            result = sd.fit(
                model,
                sd.DenoisingScoreMatching(sde),
                data,
                optimizer=optax.adam(1e-3),
                num_steps=num_steps,
                batch_size=batch,
                key=jr.key(1),
                steps_per_dispatch=per_dispatch,
                progress=False,
            )
            return jax.tree.leaves(eqx.filter(result.model, eqx.is_array))

        train(per_dispatch)  # compiles
        times = {}
        for n in (per_dispatch, per_dispatch + 10):
            t0 = time.perf_counter()
            jax.block_until_ready(train(n))
            times[n] = time.perf_counter() - t0
        # The difference leaves out what every call pays once (checks, optimiser init).
        per_step = (times[per_dispatch + 10] - times[per_dispatch]) / 10
        name = f"steps_per_dispatch={per_dispatch}"
        out[name] = {"s_per_step": per_step}
        print(f"  fit, {name}: {out[name]}", flush=True)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()
    env = environment()
    results = {
        "environment": env,
        "args": {"batch": args.batch, "steps": args.steps, "train_batch": args.train_batch},
        "single_conv": single_conv(args.batch, args.steps),
        "unet_sampling": unet_sampling(args.batch, args.steps),
        "unet_training": unet_training(args.train_batch),
    }
    here = pathlib.Path(__file__).resolve().parent / "results" / env["platform"]
    out = args.out or here / "conv_loops.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
