"""Every benchmark in one command: sampling throughput of every sampler (with the lax.scan,
virtual-Brownian-tree, diffusionjax and PyTorch references), quality per cost on an exact
score and a trained model, and training throughput.

    python benchmarks/run.py                 # full run (about 42 min on 2 CPU cores)
    python benchmarks/run.py --quick         # under 3 min on 2 quiet CPU cores
    python benchmarks/run.py --out DIR       # default: benchmarks/results/<platform>[/quick]
    python benchmarks/run.py --parts sampling,quality    # a subset of the parts
    python benchmarks/run.py --merge A/results.json B/results.json --out DIR
                                             # one report from parts run separately

Writes `results.json`, `summary.md` and PNG figures to the output folder, where the
platform is `jax.devices()[0].platform` (`cpu` or `gpu`). The same command runs unchanged on
a GPU, with the larger GPU configuration (batches up to 10^6). `--smoke` shrinks everything
to seconds for the test suite; its numbers mean nothing.
"""

import argparse
import json
import pathlib
import sys
import tempfile
import time


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import jax.random as jr  # noqa: E402
from _common import environment, load_average  # noqa: E402
from _sampling_bench import SAMPLER_NAMES  # noqa: E402

import scoresde as sd  # noqa: E402


PARTS = ("sampling", "quality", "training")
QUALITY_TARGETS = ("mixture", "swiss_roll")
ALL_SAMPLERS = SAMPLER_NAMES


def config(mode: str, platform: str) -> dict:
    """Every size of every part, by mode; GPU runs get larger batches."""
    from _quality_bench import curve_specs

    gpu = platform != "cpu"
    if mode == "full":
        mlp_batches = [10**3, 10**4, 10**5] + ([10**6] if gpu else [])
        steps, tols = [10, 20, 50, 100, 200, 500], [1e-1, 3e-2, 1e-2, 3e-3, 1e-3]
        return {
            "mlp": {
                "batches": mlp_batches,
                "steps": 100 if gpu else 50,
                "repeats": {b: (5 if gpu or b <= 10**4 else 3) for b in mlp_batches},
                "samplers": ALL_SAMPLERS,
                "max_batch": {},
            },
            "unet": {
                "data_shape": (1, 28, 28),
                "unet_kwargs": {},
                # On CPU, XLA runs the U-Net ~6x slower inside a loop than outside one
                # (jax-ml/jax#12868; 15x while it was channel-first), so CPU batches stay
                # small and the adaptive reverse SDE (~150-250 evaluations) is left out.
                "batches": [64, 1024] if gpu else [4, 16],
                "steps": 10,
                "repeats": 3 if gpu else 2,
                "samplers": ALL_SAMPLERS,
                "max_batch": {} if gpu else {"ReverseSDE Heun adaptive": 0},
            },
            "quality": {
                "num": 5000,
                "floor_draws": 20,
                "mixture": {"curves": curve_specs(steps, tols), "langevin_step": 0.05},
                "swiss_roll": {
                    "curves": curve_specs(steps, tols),
                    "langevin_step": 2e-3,
                    "train_steps": 6000,
                },
            },
            "training": {"steps": 2000, "batch": 512, "repeats": 3, "torch_steps": 2000},
        }
    if mode == "quick":
        few = [10, 100]
        return {
            "mlp": {
                "batches": [10**3, 10**4],
                "steps": 10,
                "repeats": 3,
                "samplers": ALL_SAMPLERS,
                # its vmapped adaptive solve is ~10x the fixed-step cost: 1e3 only
                "max_batch": {"ReverseSDE Heun adaptive": 10**3},
            },
            "unet": {
                "data_shape": (1, 28, 28),
                "unet_kwargs": {},
                "batches": [2],
                "steps": 2,
                "repeats": 2,
                "samplers": ("ReverseSDE Euler",),
                "max_batch": {},
            },
            "quality": {
                "num": 3000,
                "floor_draws": 8,
                "mixture": {
                    "curves": [
                        {
                            "sampler": "ReverseSDE Euler",
                            "grids": ["uniform"],
                            "steps": [10, 30, 100],
                        },
                        {"sampler": "ReverseSDE Euler", "grids": ["edm", "logsnr"], "steps": few},
                        *curve_specs(
                            few,
                            [],
                            grids=["uniform"],
                            fixed=(
                                "ReverseSDE Heun",
                                "PF-ODE Heun",
                                "PredictorCorrector",
                                "AnnealedLangevin",
                                "Langevin",
                            ),
                            adaptive=(),
                        ),
                        {"sampler": "PF-ODE Tsit5 adaptive", "tols": [1e-2, 1e-3]},
                    ],
                    "langevin_step": 0.05,
                },
                "swiss_roll": {
                    "curves": [
                        {
                            "sampler": "ReverseSDE Euler",
                            "grids": ["uniform"],
                            "steps": [10, 30, 100],
                        },
                        {"sampler": "PF-ODE Tsit5 adaptive", "tols": [1e-3]},
                    ],
                    "langevin_step": 2e-3,
                    "train_steps": 1000,
                },
            },
            "training": {
                "steps": 300,
                "batch": 512,
                "repeats": 2,
                "torch_steps": 300,
                "cases": ("fit, no EMA", "fit, EMA 0.999 (default)"),
            },
        }
    if mode == "smoke":
        euler4 = [{"sampler": "ReverseSDE Euler", "grids": ["uniform"], "steps": [4]}]
        return {
            "mlp": {
                "batches": [64],
                "steps": 4,
                "repeats": 1,
                "samplers": ("ReverseSDE Euler", "ReverseSDE Euler, brownian='tree'"),
                "max_batch": {},
            },
            "unet": {
                "data_shape": (1, 8, 8),
                "unet_kwargs": {"base_channels": 8, "channel_mults": (1,), "time_embed_size": 8},
                "batches": [2],
                "steps": 2,
                "repeats": 1,
                "samplers": ("ReverseSDE Euler",),
                "max_batch": {},
            },
            "quality": {
                "num": 200,
                "floor_draws": 3,
                "mixture": {"curves": euler4, "langevin_step": 0.05},
                # an untrained model: the harness only
                "swiss_roll": {"curves": euler4, "langevin_step": 2e-3, "train_steps": 0},
            },
            "training": {
                "steps": 10,
                "batch": 128,
                "repeats": 1,
                "torch_steps": 5,
                "cases": ("fit, no EMA",),
            },
        }
    raise ValueError(mode)


def _jsonable(obj):
    """Plain JSON types (NumPy scalars to Python ones, tuples to lists, keys to str)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():
        return obj.item()
    return obj


def run_sampling(cfg, platform, references, log, nets=("mlp", "unet")):

    out = {}
    if "mlp" in nets:
        out["mlp"] = _sampling_mlp(cfg, references, log)
    if "unet" in nets:
        out["unet"] = _sampling_unet(cfg, log)
    return out


def _sampling_mlp(cfg, references, log):
    import _sampling_bench as sb

    log("sampling throughput: MLP")
    net = sd.nn.TimeMLP(2, key=jr.key(0))
    c = cfg["mlp"]
    return sb.run_throughput(
        net,
        (2,),
        batches=c["batches"],
        steps=c["steps"],
        repeats=c["repeats"],
        samplers=c["samplers"],
        diffusionjax=references["diffusionjax"]["status"] == "ok",
        torch_status=references["torch"],
        max_batch=c["max_batch"],
        log=log,
    )


def _sampling_unet(cfg, log):
    import _sampling_bench as sb

    log("sampling throughput: U-Net")
    c = cfg["unet"]
    unet = sb.untrained_unet(c["data_shape"], **c["unet_kwargs"])
    out = sb.run_throughput(
        unet,
        tuple(c["data_shape"]),
        batches=c["batches"],
        steps=c["steps"],
        repeats=c["repeats"],
        samplers=c["samplers"],
        diffusionjax=False,
        torch_status=None,
        max_batch=c["max_batch"],
        unrolled_reference=True,
        log=log,
    )
    out["config"]["unet_kwargs"] = _jsonable(c["unet_kwargs"])
    return out


def run_quality(cfg, log, targets=QUALITY_TARGETS):
    import _quality_bench as qb

    c = cfg["quality"]
    out = {"config": _jsonable(c), "floor_rule": qb.FLOOR_RULE}
    if "mixture" in targets:
        log("quality per cost: Gaussian mixture (exact score)")
        out["mixture"] = qb.run_mixture(c, log=log)
    if "swiss_roll" in targets:
        log("quality per cost: swiss roll (trained)")
        out["swiss_roll"] = qb.run_swiss_roll(c, log=log)
    return out


def run_training(cfg, references, log):
    import _torch_ref
    import train_throughput as tt

    c = cfg["training"]
    log(f"training throughput: {c['steps']} steps, batch {c['batch']}")
    res = tt.run(c["steps"], c["batch"], c["repeats"], cases=c.get("cases", tt.CASES))
    for r in res["rows"]:
        log(f"    {r['case']}: {r['steps_per_s']:.0f} steps/s, ratio {r['ratio_to_reference']:.2f}")
    st = references["torch"]
    if st["status"] == "ok":
        data = sd.datasets.swiss_roll(20_000, key=jr.key(0), noise=0.5)
        t = _torch_ref.time_training(
            sd.nn.TimeMLP(2, key=jr.key(1)),
            data,
            c["torch_steps"],
            c["batch"],
            c["repeats"],
            device=st["device"],
        )
        ref = res["rows"][0]
        per_step = t["median_s"] / c["torch_steps"]
        res["rows"].append(
            {
                "case": f"PyTorch loop (torch {st['version']}, {st['device']})",
                "first_s": t["first_s"],
                "median_s": t["median_s"],
                "steps": c["torch_steps"],
                "steps_per_s": 1 / per_step,
                "ratio_to_reference": per_step / (ref["median_s"] / c["steps"]),
                "compile_s": None,
            }
        )
        log(f"    PyTorch loop: {1 / per_step:.0f} steps/s")
    for key in (
        "benchmark",
        "device",
        "platform",
        "num_devices",
        "jax",
        "date",
        "python",
        "cpu_count",
        "load_average",
    ):
        res.pop(key, None)
    return res


def targets(result: dict) -> list[dict]:
    """The performance targets: reported with their ratios, never asserted."""
    out = []
    limit = 1.10
    rows = result.get("sampling", {}).get("mlp", {}).get("rows", [])
    fixed_lib = {
        "ReverseSDE Euler",
        "ReverseSDE Heun",
        "PF-ODE Heun",
        "Langevin",
        "AnnealedLangevin",
        "PredictorCorrector",
    }
    for r in rows:
        if "error" in r or r["kind"] != "library" or r["name"] not in fixed_lib:
            continue
        if "time_ratio_to_scan" not in r:
            continue
        same_work = r["name"] == "ReverseSDE Euler"
        ratio = r["time_ratio_to_scan"] if same_work else r["per_eval_ratio_to_scan"]
        out.append(
            {
                "target": "fixed-step sample() vs lax.scan Euler-Maruyama"
                + ("" if same_work else " (per score evaluation)"),
                "case": f"{r['name']}, batch {r['batch']}",
                "ratio": ratio,
                "limit": limit,
                "met": ratio <= limit,
                "applies": r["batch"] >= 10**4,
                "note": "" if r["batch"] >= 10**4 else "target is for batch >= 1e4",
            }
        )
    tr = result.get("training")
    if tr:
        for r in tr["rows"]:
            if r["case"].startswith("fit") and "dispatch" not in r["case"]:
                out.append(
                    {
                        "target": "fit vs plain jax.jit + optax loop",
                        "case": r["case"],
                        "ratio": r["ratio_to_reference"],
                        "limit": limit,
                        "met": r["ratio_to_reference"] <= limit,
                        "applies": True,
                        "note": "",
                    }
                )
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small configuration, < 3 min")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS)
    )
    parser.add_argument(
        "--merge",
        type=pathlib.Path,
        nargs="+",
        metavar="RESULTS_JSON",
        help="one report in --out from results.json files of parts run separately",
    )
    parser.add_argument(
        "--nets", default="mlp,unet", help="networks the sampling part times: mlp, unet"
    )
    parser.add_argument(
        "--quality-targets",
        default=",".join(QUALITY_TARGETS),
        help="targets the quality part runs: " + ", ".join(QUALITY_TARGETS),
    )
    args = parser.parse_args(argv)
    if args.merge:
        if args.out is None:
            parser.error("--merge needs --out")
        return merge(args.merge, args.out)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    if not set(nets) <= {"mlp", "unet"}:
        parser.error(f"--nets: choose from mlp, unet; got {nets}")
    quality_targets = [q.strip() for q in args.quality_targets.split(",") if q.strip()]
    if not set(quality_targets) <= set(QUALITY_TARGETS):
        parser.error(f"--quality-targets: choose from {QUALITY_TARGETS}; got {quality_targets}")
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")

    env = environment()
    platform = env["platform"]
    if args.out is not None:
        out = args.out
    elif mode == "smoke":
        out = pathlib.Path(tempfile.mkdtemp(prefix="scoresde-bench-smoke-"))
    else:
        here = pathlib.Path(__file__).resolve().parent / "results" / platform
        out = here / "quick" if mode == "quick" else here
    out.mkdir(parents=True, exist_ok=True)

    import _references
    import _torch_ref

    references = {
        "lax.scan Euler-Maruyama": {"status": "ok", "version": None},
        "VirtualBrownianTree (brownian='tree')": {"status": "ok", "version": None},
        "diffusionjax": _references.package_status("diffusionjax"),
        "torch": _torch_ref.status(platform),
    }
    cfg = config(mode, platform)
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)

    log(f"{mode} run on {env['device']} (JAX {env['jax']}), writing to {out}")
    log("references: " + ", ".join(f"{k}: {v['status']}" for k, v in references.items()))

    result = {
        "schema_version": 1,
        "mode": mode,
        "environment": env,
        "versions": {
            name: _references.package_status(name)["version"]
            for name in ("scoresde", "equinox", "diffrax", "optax", "jaxlib", "numpy")
        },
        "config": _jsonable(cfg),
        "parts": parts,
        "references": {
            "diffusionjax": references["diffusionjax"],
            "torch": references["torch"],
        },
    }
    part_seconds = {}
    if "sampling" in parts:
        t0 = time.perf_counter()
        result["sampling"] = run_sampling(
            cfg,
            platform,
            {"diffusionjax": references["diffusionjax"], "torch": references["torch"]},
            log,
            nets=nets,
        )
        part_seconds["sampling"] = time.perf_counter() - t0
    if "quality" in parts:
        t0 = time.perf_counter()
        result["quality"] = run_quality(cfg, log, quality_targets)
        part_seconds["quality"] = time.perf_counter() - t0
    if "training" in parts:
        t0 = time.perf_counter()
        result["training"] = run_training(cfg, references, log)
        part_seconds["training"] = time.perf_counter() - t0
    result["targets"] = targets(result)
    result["part_seconds"] = part_seconds
    result["wall_s"] = time.perf_counter() - t_start
    result["load_average_end"] = load_average()
    write_report(result, out)
    log(f"wrote results.json, summary.md and {len(result['figures'])} figure(s) to {out}")
    print()
    print((out / "summary.md").read_text())
    return result


def write_report(result: dict, out: pathlib.Path) -> None:
    """`results.json`, `summary.md` and the figures for `result`, into `out`."""
    import _report

    env = result["environment"]
    figures = []
    if "sampling" in result and _report.plot_throughput(result, out / "sampling_throughput.png"):
        figures.append("sampling_throughput.png")
    for part, title in (
        ("mixture", "exact-score Gaussian mixture"),
        ("swiss_roll", "trained swiss roll"),
    ):
        sec = result.get("quality", {}).get(part)
        if sec and _report.plot_quality(
            sec,
            f"Quality per cost: {title} ({env['device']}, JAX {env['jax']})",
            out / f"quality_{part}.png",
        ):
            figures.append(f"quality_{part}.png")
    result["figures"] = figures
    (out / "results.json").write_text(json.dumps(_jsonable(result), indent=2))
    (out / "summary.md").write_text(_report.summary_markdown(result))


def merge(paths: list[pathlib.Path], out: pathlib.Path) -> dict:
    """One report from runs of different `--parts` on the same machine (a device lent for
    10 minutes a command cannot run the full benchmark in one go), or a re-run of one part
    after a fix. Each part is taken from the file that has it, split further by its keys
    (`--nets mlp` and `--nets unet` are two halves of `sampling`); where two files have the
    same one, the later file's replaces the earlier's, and the report lists it. The
    environment is the first file's, and the wall time is the sum."""
    runs = [json.loads(p.read_text()) for p in paths]
    devices = {r["environment"]["device"] for r in runs}
    modes = {r["mode"] for r in runs}
    if len(devices) > 1 or len(modes) > 1:
        raise SystemExit(f"--merge: runs differ in device {devices} or mode {modes}")
    result = dict(runs[0])
    result["parts"], result["part_seconds"], replaced = [], {}, []
    for path, r in zip(paths, runs, strict=True):
        for part in r["parts"]:
            if part not in result["parts"]:
                result["parts"].append(part)
                result[part], result["part_seconds"][part] = {}, 0.0
            replaced += [
                f"{part}/{k} from {path}"
                for k, v in r[part].items()
                if k in result[part] and result[part][k] != v
            ]
            result[part].update(r[part])
            result["part_seconds"][part] += r["part_seconds"][part]
    result["wall_s"] = sum(r["wall_s"] for r in runs)
    result["load_average_end"] = runs[-1]["load_average_end"]
    result["merged_from"] = [str(p) for p in paths]
    result["replaced"] = replaced
    result["targets"] = targets(result)
    out.mkdir(parents=True, exist_ok=True)
    write_report(result, out)
    print((out / "summary.md").read_text())
    return result


if __name__ == "__main__":
    main()
