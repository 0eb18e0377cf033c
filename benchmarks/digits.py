"""The digits recipe end to end, timed: train on the 1497 training digits with the CLI's
defaults for images, save and reload, sample, the digits' Fréchet distance against its
floor, and `log_prob`/`evaluate` on 100 held-out digits (the issue-17 budget: under a
minute). Writes `results/cpu/digits.json` and `results/cpu/digits_samples.png`.

    python benchmarks/digits.py                 # trains a run in /tmp/scoresde_digits
    python benchmarks/digits.py --run DIR       # reuse (or create) the run in DIR

Times are wall-clock on whatever else the machine runs; the record carries the load
average.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import jax
import jax.random as jr
import numpy as np


ROOT = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
import scoresde as sd  # noqa: E402


TRAIN = ["--dataset", "digits", "--steps", "4000", "--batch-size", "128", "--no-progress"]


def cli(*argv) -> float:
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent)}
    subprocess.run([sys.executable, "-m", "scoresde", *map(str, argv)], check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default="/tmp/scoresde_digits")
    parser.add_argument("--out", default=str(ROOT / "results" / "cpu"))
    args = parser.parse_args()
    run, out = pathlib.Path(args.run), pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"load_average_start": list(os.getloadavg()), "cores": os.cpu_count()}

    if not (run / "checkpoint.ckpt").exists():
        record["train_s"] = cli("train", *TRAIN, "--out", run)
    record["train_command"] = "scoresde train " + " ".join(TRAIN) + f" --out {run}"

    model = sd.load_model(run / "checkpoint.ckpt")  # a new session's one line
    test = np.asarray(sd.datasets.load_digits(split="test")[0])
    np.save(run / "digits_test.npy", test)

    import diffrax as dfx

    sampler = sd.ReverseSDE(dfx.Euler(), num_steps=500)
    start = time.perf_counter()
    x = np.asarray(sd.sample(model.sde, model, sampler, (300, 1, 8, 8), key=jr.key(0)))
    record["sample_300_s"] = time.perf_counter() - start
    labels, confidence = sd.metrics.digits_predictions(x)
    _, real_confidence = sd.metrics.digits_predictions(test)
    record["frechet_300"] = sd.metrics.digits_frechet_distance(x)
    record["frechet_floor_300"] = sd.metrics.digits_frechet_distance(test)
    record["frechet_64"] = sd.metrics.digits_frechet_distance(x[:64])
    record["frechet_floor_64"] = sd.metrics.digits_frechet_distance(test[:64])
    record["recognised_64"] = float(np.mean(confidence[:64] >= 0.9))
    record["recognised_300"] = float(np.mean(confidence >= 0.9))
    record["real_recognised_300"] = float(np.mean(real_confidence >= 0.9))
    titles = [f"{k} {c:.2f}" for k, c in zip(labels[:64], confidence[:64], strict=True)]
    fig = sd.plotting.plot_image_grid(x[:64], titles=titles)
    sd.plotting.save(fig, out / "digits_samples.png")

    for tol in (1e-5, 1e-3):
        controller = dfx.PIDController(rtol=tol, atol=tol)
        start = time.perf_counter()
        lp = sd.log_prob(
            model.sde, model, test[:100], key=jr.key(0), stepsize_controller=controller
        )
        jax.block_until_ready(lp)
        record[f"log_prob_100_tol{tol:g}_s"] = time.perf_counter() - start
    for tol in ("1e-5", "1e-3"):
        argv = ["evaluate", "--run", run, "--data", run / "digits_test.npy", "--num", 100]
        record[f"evaluate_100_tol{tol}_s"] = cli(*argv, "--tol", tol, "--no-progress")
        report = json.loads((run / "evaluation.json").read_text())
        record[f"evaluate_100_tol{tol}_report"] = report
    record["load_average_end"] = list(os.getloadavg())
    (out / "digits.json").write_text(json.dumps(record, indent=2))
    print(json.dumps({k: v for k, v in record.items() if "report" not in k}, indent=2))


if __name__ == "__main__":
    main()
