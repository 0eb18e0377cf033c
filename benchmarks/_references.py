"""Hand-written baselines the library is measured against: a `lax.scan` Euler–Maruyama loop
(what a user writes by hand, the SGM-from-scratch tutorial), `diffusionjax`'s Euler–Maruyama
sampler, and the
availability checks for the optional references.

All of them integrate the VP SDE's reverse-time SDE from T down to eps on a uniform grid
with one batched score evaluation per step, like `ReverseSDE(diffrax.Euler(), num_steps=n)`.
"""

import importlib.metadata

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.random as jr


def scan_euler_maruyama(sde, net, shape, steps, key):
    """What a user writes by hand (the SGM-from-scratch tutorial): one batched network call per
    step, in a
    `lax.scan`. `shape` is `(num, *data)`; `net(t, x)` takes ONE sample."""
    ts = jnp.linspace(sde.T, sde.default_eps, steps + 1)
    key_x, key_w = jr.split(key)
    x = jr.normal(key_x, shape)
    batched = jax.vmap(net, in_axes=(None, 0))

    def body(x, i):
        t, dt = ts[i], ts[i + 1] - ts[i]
        beta = sde.beta(t)
        drift = -0.5 * beta * x - beta * batched(t, x)
        noise = jr.normal(jr.fold_in(key_w, i), x.shape)
        return x + drift * dt + jnp.sqrt(beta * -dt) * noise, None

    x, _ = lax.scan(body, x, jnp.arange(steps))
    return x


def unrolled_euler_maruyama(sde, net, shape, steps, key):
    """`scan_euler_maruyama` with the loop unrolled in Python: one straight-line program,
    no XLA while loop (compile time grows with `steps`; for small step counts only)."""
    ts = jnp.linspace(sde.T, sde.default_eps, steps + 1)
    key_x, key_w = jr.split(key)
    x = jr.normal(key_x, shape)
    batched = jax.vmap(net, in_axes=(None, 0))
    for i in range(steps):
        t, dt = ts[i], ts[i + 1] - ts[i]
        beta = sde.beta(t)
        drift = -0.5 * beta * x - beta * batched(t, x)
        noise = jr.normal(jr.fold_in(key_w, i), x.shape)
        x = x + drift * dt + jnp.sqrt(beta * -dt) * noise
    return x


def package_status(name: str) -> dict:
    """`{"status": "ok", "version": ...}` or `{"status": "not installed"}`."""
    try:
        return {"status": "ok", "version": importlib.metadata.version(name)}
    except importlib.metadata.PackageNotFoundError:
        return {"status": "not installed", "version": None}


def diffusionjax_sampler(net, shape, steps, beta_min=0.1, beta_max=20.0):
    """`diffusionjax`'s own Euler–Maruyama sampler (`get_sampler(shape, EulerMaruyama(
    sde.reverse(score)))`, as in its README) on the same VP SDE and network, or `None`
    where diffusionjax is not installed. Returns a jitted `fn(net, key) -> samples`
    (the network an argument, not a constant XLA could fold).

    diffusionjax integrates on its uniform grid `ts = [dt, 2dt, ..., 1]` (`get_times`), so
    with `steps` steps it stops at `dt = 1/steps` rather than at the library's `eps`; the
    work per step (one batched score call, one normal draw) is the same."""
    try:
        from diffusionjax.sde import VP
        from diffusionjax.solvers import EulerMaruyama
        from diffusionjax.utils import get_linear_beta_function, get_sampler, get_times
    except ImportError:
        return None
    beta, mean_coeff = get_linear_beta_function(beta_min=beta_min, beta_max=beta_max)
    ts, _ = get_times(num_steps=steps)  # outside jit: get_times asserts on concrete values

    @eqx.filter_jit
    def fn(net, key):
        batched = jax.vmap(net)  # diffusionjax calls score(x, t) on a batch, t of shape (n,)
        rsde = VP(beta, mean_coeff).reverse(lambda x, t: batched(t, x))
        sampler = get_sampler(tuple(shape), EulerMaruyama(rsde, ts=ts), denoise=False)
        return sampler(key)[0]

    return fn


__all__ = [
    "diffusionjax_sampler",
    "package_status",
    "scan_euler_maruyama",
    "unrolled_euler_maruyama",
]
