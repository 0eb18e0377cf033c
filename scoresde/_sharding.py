"""Data parallelism over devices: the batch axis is split over a 1-D mesh named "batch",
everything else is replicated, and XLA inserts the collectives."""

import warnings
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


BATCH = "batch"
Devices = Mesh | Sequence[jax.Device] | None


def resolve_mesh(devices: Devices, batch: int, what: str) -> Mesh | None:
    """The mesh a call runs on, or `None` for one device.

    - a `Mesh`: used as given (its first axis splits the batch);
    - a list of devices: a 1-D mesh over them;
    - `None`: every device of every process (`jax.devices()`), when the batch divides
      evenly over them; otherwise one device, with a warning saying so.
    """
    if isinstance(devices, Mesh):
        mesh = devices
    elif devices is not None and (
        isinstance(devices, (str, bytes)) or not isinstance(devices, Sequence)
    ):
        raise TypeError(
            f"`devices` must be None, a list of jax devices or a 1-D jax.sharding.Mesh, got "
            f"{type(devices).__name__}."
        )
    else:
        chosen = list(jax.devices() if devices is None else devices)
        if not chosen:
            raise ValueError("`devices` is empty; pass None for all devices, or a list of them.")
        not_devices = [d for d in chosen if not isinstance(d, jax.Device)]
        if not_devices:
            raise TypeError(
                f"`devices` must hold jax devices (from jax.devices()), got "
                f"{type(not_devices[0]).__name__} {not_devices[0]!r}."
            )
        repeated = [d for i, d in enumerate(chosen) if d in chosen[:i]]
        if repeated:
            raise ValueError(
                f"`devices` lists {repeated[0]} more than once; pass each device once, e.g. "
                "jax.devices()[:2]."
            )
        if len(chosen) == 1:
            return None
        if batch % len(chosen):
            if devices is not None:
                raise ValueError(
                    f"{what} ({batch}) must divide evenly over the {len(chosen)} devices given; "
                    f"use a multiple of {len(chosen)}."
                )
            if jax.process_count() > 1:
                raise ValueError(
                    f"{what} ({batch}) must divide evenly over the {len(chosen)} devices of "
                    "this multi-process run."
                )
            warnings.warn(
                f"{what} ({batch}) does not divide evenly over the {len(chosen)} local devices; "
                f"running on one device. Use a multiple of {len(chosen)} to use them all.",
                stacklevel=3,
            )
            return None
        mesh = Mesh(np.array(chosen), (BATCH,))
    if mesh.devices.ndim != 1:
        raise ValueError(
            f"`devices` must be a 1-D mesh (data parallelism), got axes {mesh.axis_names}."
        )
    size = mesh.devices.shape[0]
    if batch % size:
        raise ValueError(
            f"{what} ({batch}) must divide evenly over the mesh's first axis ({size} devices)."
        )
    return mesh if mesh.axis_names[0] == BATCH else Mesh(mesh.devices, (BATCH,))


def replicated(mesh: Mesh | None, tree):
    """`tree`'s arrays placed on every device of `mesh` (unchanged without a mesh)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, P())
    arrays, static = eqx.partition(tree, eqx.is_array)
    if jax.process_count() > 1:
        arrays = jax.tree.map(
            lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), arrays
        )
    else:
        arrays = jax.device_put(arrays, sharding)
    return eqx.combine(arrays, static)


def global_data(mesh: Mesh | None, data):
    """The training data as one array visible to the whole mesh: replicated on every
    device with one process; with several, each process's rows (its shard) concatenated
    in process order and split along the batch axis."""
    if mesh is None:
        return data
    if jax.process_count() == 1:
        return jax.device_put(data, NamedSharding(mesh, P()))
    return jax.make_array_from_process_local_data(batch_sharding(mesh), np.asarray(data))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(BATCH))


def map_batch(
    fn: Callable, batched, *, mesh: Mesh | None, chunk_size: int | None, replicated_args=()
):
    """`fn(batched_block, *replicated_args)` over the leading axis of `batched` (a pytree of
    arrays), split over `mesh`'s devices and, on each device, into blocks of `chunk_size`
    run one after another with `lax.map`.

    Every device then runs the same compiled program on blocks of the same shape, which is
    what makes sample $i$ bitwise equal whatever the number of devices. Without a
    `chunk_size` each device takes its whole share in one block (fastest; equal only up
    to float rounding across device counts).
    """

    def local(batched, *rest):
        n = jax.tree.leaves(batched)[0].shape[0]
        if chunk_size is None:
            return fn(batched, *rest)
        if n % chunk_size:
            raise ValueError(f"`chunk_size` ({chunk_size}) must divide the per-device batch ({n}).")
        blocks = jax.tree.map(
            lambda a: a.reshape(n // chunk_size, chunk_size, *a.shape[1:]), batched
        )
        out = lax.map(lambda b: fn(b, *rest), blocks)
        return jax.tree.map(lambda a: a.reshape(n, *a.shape[2:]), out)

    if mesh is None:
        return local(batched, *replicated_args)
    arrays, static = eqx.partition(replicated_args, eqx.is_array)

    def sharded(batched, arrays):
        return local(batched, *eqx.combine(arrays, static))

    return jax.shard_map(
        sharded, mesh=mesh, in_specs=(P(BATCH), P()), out_specs=P(BATCH), check_vma=False
    )(batched, arrays)


def fold_in_keys(key, n: int, mesh: Mesh | None, offset=0):
    """`fold_in(key, offset + i)` for i < n, laid out along the batch axis of `mesh`.
    Called inside the caller's jit, so the keys cost no dispatch of their own and are built
    where they are used, on every process's devices."""
    keys = jax.vmap(lambda i: jax.random.fold_in(key, offset + i))(jnp.arange(n))
    return keys if mesh is None else lax.with_sharding_constraint(keys, batch_sharding(mesh))
