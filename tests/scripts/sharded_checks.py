"""Run with XLA_FLAGS=--xla_force_host_platform_device_count=4 (tests/test_sharding.py
does): prints one JSON object of measurements that the test asserts on."""

import json
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

import scoresde as sd


assert jax.device_count() == 4, jax.devices()
devs = jax.devices()
sde, net = sd.VPSDE(), sd.nn.TimeMLP(2, width=64, key=jr.key(0))
out = {}

samplers = {
    "reverse_sde": sd.ReverseSDE(num_steps=30),
    "pf_ode": sd.ProbabilityFlowODE(),
    "annealed_langevin": sd.AnnealedLangevin(num_levels=4, steps_per_level=5, step_size=1e-3),
    "predictor_corrector": sd.PredictorCorrector(num_steps=10),
}
for name, sampler in samplers.items():
    runs = {
        n: np.asarray(
            sd.sample(sde, net, sampler, (32, 2), key=jr.key(1), devices=devs[:n], chunk_size=8)
        )
        for n in (1, 2, 4)
    }
    default = sd.sample(sde, net, sampler, (32, 2), key=jr.key(1))
    out[name] = {
        "bitwise_2": bool((runs[1] == runs[2]).all()),
        "bitwise_4": bool((runs[1] == runs[4]).all()),
        "max_diff_default": float(np.abs(np.asarray(default) - runs[1]).max()),
        "default_spec": str(default.sharding.spec),
        "default_devices": len(default.sharding.device_set),
    }

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    uneven = sd.sample(sde, net, samplers["reverse_sde"], (10, 2), key=jr.key(1))
out["uneven"] = {
    "devices": len(uneven.sharding.device_set),
    "warning": " ".join(str(w.message) for w in caught),
}

data = jr.normal(jr.key(3), (512, 2))
fits = {}
for n in (1, 4):
    fits[n] = sd.fit(
        sd.nn.TimeMLP(2, width=32, key=jr.key(4)),
        sd.DenoisingScoreMatching(sde),
        data,
        optimizer=optax.adam(1e-3),
        num_steps=40,
        batch_size=64,
        key=jr.key(5),
        progress=False,
        devices=devs[:n],
    )
leaves = [jax.tree.leaves(eqx.filter(fits[n].raw_model, eqx.is_array)) for n in (1, 4)]
weight = fits[4].raw_model.mlp.layers[0].weight
out["fit"] = {
    "max_param_diff": max(float(jnp.abs(a - b).max()) for a, b in zip(*leaves, strict=True)),
    "max_loss_diff": float(np.abs(fits[1].losses - fits[4].losses).max()),
    "param_devices": len(weight.sharding.device_set),
    "param_replicated": bool(weight.sharding.is_fully_replicated),
}

# Conditional: the exact class-conditional mixture, one label per sample (null included).
mixture = sd.GaussianMixtureScore(
    sde,
    weights=jnp.array([0.5, 0.3, 0.2]),
    means=jnp.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]]),
    covariances=jnp.stack([0.3 * jnp.eye(2)] * 3),
)
cond = sd.ClassifierFreeGuidance(mixture.class_conditional(), scale=1.5, null_condition=3)
labels = jnp.arange(32) % 4
out["conditional"] = {}
for name, sampler in samplers.items():
    runs = {
        n: np.asarray(
            sd.sample(
                sde,
                cond,
                sampler,
                (32, 2),
                key=jr.key(1),
                devices=devs[:n],
                chunk_size=8,
                condition=labels,
            )
        )
        for n in (1, 2, 4)
    }
    out["conditional"][name] = bool((runs[1] == runs[2]).all() and (runs[1] == runs[4]).all())

data_labels = jr.randint(jr.key(8), (512,), 0, 3)
cfits = {
    n: sd.fit(
        sd.NoisePrediction(sd.nn.TimeMLP(2, width=32, num_classes=3, key=jr.key(4)), sde),
        sd.DenoisingScoreMatching(sde),
        data,
        condition=data_labels,
        condition_dropout=0.2,
        null_condition=3,
        optimizer=optax.adam(1e-3),
        num_steps=40,
        batch_size=64,
        key=jr.key(5),
        progress=False,
        devices=devs[:n],
    )
    for n in (1, 4)
}
cleaves = [jax.tree.leaves(eqx.filter(cfits[n].raw_model, eqx.is_array)) for n in (1, 4)]
out["conditional_fit"] = {
    "max_param_diff": max(float(jnp.abs(a - b).max()) for a, b in zip(*cleaves, strict=True)),
    "max_loss_diff": float(np.abs(cfits[1].losses - cfits[4].losses).max()),
}

x = jr.normal(jr.key(6), (16, 2))
one = sd.log_prob(sde, net, x, devices=devs[:1], chunk_size=4)
four = sd.log_prob(sde, net, x, chunk_size=4)
out["log_prob"] = {
    "bitwise": bool((np.asarray(one) == np.asarray(four)).all()),
    "max_diff": float(np.abs(np.asarray(one) - np.asarray(four)).max()),
    "spec": str(four.sharding.spec),
}
print(json.dumps(out))
