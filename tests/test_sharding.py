"""Data parallelism on 4 forced host devices and across two processes. Each check runs in
a fresh Python process, because XLA's device count is fixed when JAX starts."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import jax.random as jr
import numpy as np
import optax
import pytest

import scoresde as sd


SCRIPTS = pathlib.Path(__file__).parent / "scripts"


def run_script(name, *args, env=None, timeout=600):
    env = {**os.environ, **(env or {})}
    return subprocess.Popen(
        [sys.executable, str(SCRIPTS / name), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def last_json(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def four_devices():
    proc = run_script(
        "sharded_checks.py", env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    )
    return last_json(proc)


@pytest.mark.parametrize(
    "name", ["reverse_sde", "pf_ode", "annealed_langevin", "predictor_corrector"]
)
def test_sample_i_is_bitwise_the_same_on_1_2_and_4_devices(four_devices, name):
    # PredictorCorrector is the case `scalar_barrier` exists for: without it its per-step
    # exp-based coefficients were fused differently under shard_map (1.9e-6 apart).
    r = four_devices[name]
    assert r["bitwise_2"] and r["bitwise_4"]
    assert r["default_spec"] == "P('batch',)" and r["default_devices"] == 4


@pytest.mark.parametrize(
    "name", ["reverse_sde", "pf_ode", "annealed_langevin", "predictor_corrector"]
)
def test_conditional_sample_i_is_bitwise_the_same_on_1_2_and_4_devices(four_devices, name):
    # Labels (with the null label) sharded with the keys; guided exact class conditionals.
    assert four_devices["conditional"][name]


def test_sharded_conditional_training_with_label_dropout_matches_one_device(four_devices):
    r = four_devices["conditional_fit"]
    assert r["max_param_diff"] < 1e-5 and r["max_loss_diff"] < 1e-5


def test_uneven_batch_runs_on_one_device_and_says_so(four_devices):
    r = four_devices["uneven"]
    assert r["devices"] == 1 and "does not divide evenly" in r["warning"]


def test_sharded_training_matches_single_device(four_devices):
    r = four_devices["fit"]
    assert r["max_param_diff"] < 1e-5 and r["max_loss_diff"] < 1e-5
    assert r["param_devices"] == 4 and r["param_replicated"]


def test_sharded_log_prob_matches_and_is_sharded(four_devices):
    r = four_devices["log_prob"]
    assert r["bitwise"] and r["spec"] == "P('batch',)"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_together_like_one():
    port = free_port()
    procs = [run_script("distributed_worker.py", pid, port) for pid in (0, 1)]
    results = [last_json(p, timeout=300) for p in procs]
    assert [r["devices"] for r in results] == [2, 2]
    # Parameters are replicated: both processes hold the same weights and losses ...
    assert results[0]["weight_sum"] == results[1]["weight_sum"]
    # ... and they equal a single-process run on the two shards put together.
    data = jr.normal(jr.key(0), (256, 2))
    single = sd.fit(
        sd.nn.TimeMLP(2, width=32, key=jr.key(1)),
        sd.DenoisingScoreMatching(sd.VPSDE()),
        data,
        optimizer=optax.adam(1e-3),
        num_steps=20,
        batch_size=64,
        key=jr.key(2),
        progress=False,
    )
    np.testing.assert_allclose(results[0]["loss"], single.losses, rtol=1e-5, atol=1e-6)
    weight_sum = float(single.raw_model.mlp.layers[0].weight.sum())
    assert results[0]["weight_sum"] == pytest.approx(weight_sum, rel=1e-5, abs=1e-5)


def test_bad_device_arguments_raise():
    net = sd.nn.TimeMLP(2, width=16, key=jr.key(0))
    sampler = sd.ReverseSDE(num_steps=5)
    with pytest.raises(ValueError, match="empty"):
        sd.sample(sd.VPSDE(), net, sampler, (4, 2), key=jr.key(0), devices=[])
    with pytest.raises(ValueError, match="chunk_size"):
        sd.sample(sd.VPSDE(), net, sampler, (4, 2), key=jr.key(0), chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size"):
        sd.sample(sd.VPSDE(), net, sampler, (6, 2), key=jr.key(0), chunk_size=4)
    assert jax.device_count() == 1  # the main test process keeps one device
