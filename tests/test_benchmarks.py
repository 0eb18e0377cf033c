"""The benchmark entry point runs end to end in its smallest configuration (`--smoke`) and
writes a well-formed record. No timing is asserted: only the schema of what it writes.
The parts run in two commands merged with `--merge` (the sampling part split by network,
the quality part by target), as on a device lent 10 minutes a command, so the merged record
is the one checked."""

import json
import math
import pathlib
import subprocess
import sys

import pytest


BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
RUN = BENCHMARKS / "run.py"


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _run(*args):
    proc = subprocess.run(
        [sys.executable, str(RUN), *map(str, args)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    _run(
        "--smoke",
        "--parts",
        "sampling,quality",
        "--nets",
        "mlp",
        "--quality-targets",
        "mixture",
        "--out",
        out / "a",
    )
    _run("--smoke", "--nets", "unet", "--quality-targets", "swiss_roll", "--out", out / "b")
    _run("--merge", out / "a" / "results.json", out / "b" / "results.json", "--out", out)
    return out, json.loads((out / "results.json").read_text())


def test_writes_json_summary_and_figures(smoke):
    out, res = smoke
    summary = (out / "summary.md").read_text()
    assert "## Targets" in summary and "## Sampling throughput" in summary
    assert res["figures"], "no figures"
    for name in res["figures"]:
        assert name.endswith(".png")
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_environment_and_references(smoke):
    _, res = smoke
    assert res["schema_version"] == 1 and res["mode"] == "smoke"
    env = res["environment"]
    for key in ("device", "platform", "jax", "date"):
        assert isinstance(env[key], str) and env[key], key
    assert env["platform"] in ("cpu", "gpu", "tpu")
    assert isinstance(env["num_devices"], int) and env["num_devices"] >= 1
    assert set(res["references"]) == {"diffusionjax", "torch"}
    for st in res["references"].values():
        assert (
            st["status"] == "ok"
            or st["status"] == "not installed"
            or st["status"].startswith("skipped")
        )
    assert _positive(res["wall_s"])
    assert set(res["part_seconds"]) == {"sampling", "quality", "training"}
    assert len(res["merged_from"]) == 2 and res["replaced"] == []


def test_sampling_rows(smoke):
    _, res = smoke
    for part in ("mlp", "unet"):
        sec = res["sampling"][part]
        assert isinstance(sec["config"]["num_steps"], int)
        names = {r["name"] for r in sec["rows"]}
        assert "lax.scan Euler-Maruyama (reference)" in names
        assert "ReverseSDE Euler" in names
        for r in sec["rows"]:
            assert "error" not in r, r.get("error")
            assert r["kind"] in ("library", "reference")
            for key in (
                "median_s",
                "first_s",
                "samples_per_s",
                "us_per_score_eval",
                "score_evals_mean",
                "time_ratio_to_scan",
                "per_eval_ratio_to_scan",
            ):
                assert _positive(r[key]), (r["name"], key, r.get(key))
            assert r["compile_s"] >= 0 and r["repeats"] == len(r["runs_s"]) >= 1
    tree = [r for r in res["sampling"]["mlp"]["rows"] if "time_ratio_to_grid" in r]
    assert tree and all(_positive(r["time_ratio_to_grid"]) for r in tree)
    names = {r["name"] for r in res["sampling"]["mlp"]["rows"]}
    assert ("PyTorch loop" in names) == (res["references"]["torch"]["status"] == "ok")
    dj = res["references"]["diffusionjax"]["status"] == "ok"
    assert ("diffusionjax EulerMaruyama" in names) == dj


def test_quality_curves(smoke):
    _, res = smoke
    q = res["quality"]
    assert isinstance(q["floor_rule"], str) and q["floor_rule"]
    for part in ("mixture", "swiss_roll"):
        sec = q[part]
        floor = sec["floor"]
        assert floor["num_draws"] == len(floor["energy_values"]) >= 2
        for key in ("energy_mean", "energy_sd", "energy_threshold"):
            assert isinstance(floor[key], float) and math.isfinite(floor[key])
        assert floor["energy_sd"] >= 0 and _positive(floor["sliced_w2_mean"])
        assert sec["curves"]
        for c in sec["curves"]:
            assert isinstance(c["sampler"], str) and isinstance(c["grid"], str)
            assert c["evals_to_floor"] is None or _positive(c["evals_to_floor"])
            for p in c["points"]:
                assert "error" not in p, p.get("error")
                assert _positive(p["score_evals_mean"]) and _positive(p["sliced_w2"])
                assert math.isfinite(p["energy"])


def test_training_and_targets(smoke):
    _, res = smoke
    rows = res["training"]["rows"]
    assert rows[0]["case"].startswith("plain jax.jit")
    for r in rows:
        assert _positive(r["steps_per_s"]) and _positive(r["ratio_to_reference"])
    assert any(t["target"].startswith("fit") for t in res["targets"])
    assert any(t["target"].startswith("fixed-step") for t in res["targets"])
    for t in res["targets"]:
        assert _positive(t["ratio"]) and t["limit"] == 1.10
        assert isinstance(t["met"], bool) and isinstance(t["applies"], bool)
        assert t["met"] == (t["ratio"] <= t["limit"])


def test_gpu_kernels_script_runs(tmp_path):
    """`gpu_kernels.py` in its smallest configuration: every case timed; kernel counts only
    where PyTorch has CUDA (None here on a CPU machine)."""
    proc = subprocess.run(
        [
            sys.executable,
            "gpu_kernels.py",
            "--batch",
            "4",
            "--steps",
            "2",
            "--repeats",
            "1",
            "--out",
            str(tmp_path),
        ],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "kernels.json").read_text())
    assert len(res["cases"]) == 7
    for case in res["cases"].values():
        assert _positive(case["wall_ms"])
        assert case["kernels"] is None or _positive(case["kernels"]["kernels_per_call"])
    assert "==== reference lax.scan" in (tmp_path / "hlo.txt").read_text()
