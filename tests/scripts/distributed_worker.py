"""One process of a two-process CPU training run (tests/test_sharding.py starts two)."""

import json
import sys

import jax


process_id, port = int(sys.argv[1]), int(sys.argv[2])
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(
    coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id
)

import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import optax  # noqa: E402

import scoresde as sd  # noqa: E402


data = jr.normal(jr.key(0), (256, 2))
shard = data[process_id * 128 : (process_id + 1) * 128]  # each process feeds its own rows
result = sd.fit(
    sd.nn.TimeMLP(2, width=32, key=jr.key(1)),
    sd.DenoisingScoreMatching(sd.VPSDE()),
    shard,
    optimizer=optax.adam(1e-3),
    num_steps=20,
    batch_size=64,
    key=jr.key(2),
    progress=False,
)
weight = result.raw_model.mlp.layers[0].weight
print(
    json.dumps(
        {
            "process": process_id,
            "devices": jax.device_count(),
            "weight_sum": float(jnp.sum(weight.addressable_shards[0].data)),
            "loss": result.losses.tolist(),
        }
    )
)
