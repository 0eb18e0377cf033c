"""Keeping results independent of how XLA compiles the program around them."""

import jax.lax as lax


def scalar_barrier(*scalars):
    """`scalars` unchanged, computed apart from whatever uses them.

    A per-step coefficient of the time alone (`exp` of an integrated β, a ratio of
    standard deviations) is otherwise free to be fused into the elementwise kernel over the
    batch, where XLA:CPU evaluates transcendental functions with its vectorised
    approximations, or kept as a scalar, evaluated by the scalar ones. The two can differ
    in the last bit, and which one a program gets depends on its surroundings (one device
    or a `shard_map` over several). Behind the barrier the coefficient is always the scalar
    computation, so sample $i$ stays bitwise the same on any number of devices.
    """
    out = lax.optimization_barrier(scalars)
    return out[0] if len(scalars) == 1 else out
