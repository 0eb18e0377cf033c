"""Multi-layer perceptron score networks for vector data (the seeds' networks)."""

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Float, PRNGKeyArray, ScalarLike
from ._embedding import SinusoidalEmbedding
from ._misc import check_data, check_int, check_time


def _check_activation(activation) -> Callable:
    if not callable(activation):
        raise TypeError(
            f"`activation` must be a callable such as jax.nn.relu, got {type(activation).__name__}."
        )
    return activation


class TimeMLP(eqx.Module):
    r"""Seed 000's `ApproximateScore`: an MLP on the sample concatenated with time features.

    The input to the first layer is

    $$\big(x,\; t - \tfrac12,\; \cos 2\pi t\;[,\; \sin 2\pi f_j t,\; \cos 2\pi f_j t]\big),$$

    then `depth` hidden layers of `width` units with `activation`, and a linear output of
    size `data_size`. With `num_fourier = n > 0`, $n$ extra fixed frequencies
    $f_j = 2^j$, $j = 0, \dots, n-1$ (one octave apart, a
    [`SinusoidalEmbedding`][scoresde.nn.SinusoidalEmbedding] with angular frequencies
    $2\pi$ to $2\pi\,2^{n-1}$) add sine and cosine features, $2n$ inputs in all; they help the
    network resolve fast changes of the score near $t = 0$.

    The defaults (`width=256, depth=3, relu`) are the seed's network: for `data_size=2`
    it has 133,378 parameters.

    **Arguments:**

    - `data_size`: the dimension $d$ of one sample; the network maps `(d,)` to `(d,)`.
    - `width`: units per hidden layer.
    - `depth`: number of hidden layers (0 gives an affine map).
    - `activation`: the hidden activation.
    - `num_fourier`: number of extra Fourier frequencies (0 for the seed's features only).
    - `key`: a `jax.random` key for the initialisation.

    Called as `net(t, x)` with a scalar `t` and ONE sample `x` of shape `(data_size,)`.
    """

    mlp: eqx.nn.MLP
    fourier: SinusoidalEmbedding | None
    data_size: int = eqx.field(static=True)

    def __init__(
        self,
        data_size: int,
        *,
        width: int = 256,
        depth: int = 3,
        activation: Callable = jax.nn.relu,
        num_fourier: int = 0,
        key: PRNGKeyArray,
    ):
        self.data_size = check_int("data_size", data_size)
        check_int("width", width)
        check_int("depth", depth, minimum=0)
        check_int("num_fourier", num_fourier, minimum=0)
        if num_fourier > 0:
            top = 2 * math.pi * 2.0 ** (num_fourier - 1)
            self.fourier = SinusoidalEmbedding(2 * num_fourier, min_freq=2 * math.pi, max_freq=top)
        else:
            self.fourier = None
        in_size = data_size + 2 + 2 * num_fourier
        self.mlp = eqx.nn.MLP(
            in_size, data_size, width, depth, activation=_check_activation(activation), key=key
        )

    def time_features(self, t: ScalarLike) -> Float[Array, " k"]:
        r"""The time part of the first layer's input: $(t - \tfrac12, \cos 2\pi t, \dots)$."""
        t = check_time("TimeMLP", t).astype(jnp.result_type(float))
        feats = jnp.stack([t - 0.5, jnp.cos(2 * jnp.pi * t)])
        if self.fourier is not None:
            feats = jnp.concatenate([feats, self.fourier(t)])
        return feats

    def __call__(self, t: ScalarLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        check_data("TimeMLP", (self.data_size,), x)
        feats = self.time_features(t).astype(x.dtype)
        return self.mlp(jnp.concatenate([x, feats]))


class NoiseConditionalMLP(eqx.Module):
    r"""Seed 002's `ScoreModel`: a noise-conditional MLP with a learned embedding of the
    conditioning input.

    The conditioning input $t$ goes through a learned embedding
    `Linear(1, embed_size) – ReLU – Linear(embed_size, embed_size)`; the embedding is
    concatenated with $x$ and fed to `Linear(data_size + embed_size, width) – ReLU –
    Linear(width, data_size)`.

    Seed 002 embeds the noise level $\sigma$ itself. Here the input is the diffusion time
    $t$, as for every network of the library. For the
    [`VESDE`][scoresde.VESDE] the noise level
    $\sigma(t) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^{t/T}$ has

    $$\log \sigma(t) = \log \sigma_{\min} + \frac tT \log\frac{\sigma_{\max}}{\sigma_{\min}},$$

    affine in $t$, and the first layer of the embedding is affine; so a learned embedding
    of $t$ is exactly the seed's $\sigma$-embedding on a log scale. It is better conditioned
    than raw $\sigma \in [0.1, 20]$, where the small noise levels, which need the most
    resolution, are squeezed into a few percent of the input range. To condition on a
    given $\sigma$, pass `t = sde.t_from_sigma(sigma)`.

    With the defaults (`embed_size=16, width=128`) and `data_size=2` it has 2,994
    parameters.

    **Arguments:**

    - `data_size`: the dimension $d$ of one sample.
    - `embed_size`: size of the learned embedding of $t$.
    - `width`: hidden units of the backbone.
    - `depth`: hidden layers of the backbone (1, the seed's, by default). One layer is
      weak: on a two-Gaussian toy set (NCSN loss, 5000 steps) its annealed Langevin
      samples had energy distance 0.027 to held-out data, three layers < 0.001; the
      seed trains 30000 steps.
    - `key`: a `jax.random` key for the initialisation.

    Called as `net(t, x)` with a scalar `t` and ONE sample `x` of shape `(data_size,)`.
    """

    embedding: eqx.nn.MLP
    backbone: eqx.nn.MLP
    data_size: int = eqx.field(static=True)

    def __init__(
        self,
        data_size: int,
        *,
        embed_size: int = 16,
        width: int = 128,
        depth: int = 1,
        key: PRNGKeyArray,
    ):
        self.data_size = check_int("data_size", data_size)
        check_int("embed_size", embed_size)
        check_int("width", width)
        check_int("depth", depth)
        k_embed, k_backbone = jr.split(key)
        self.embedding = eqx.nn.MLP(
            1, embed_size, embed_size, 1, activation=jax.nn.relu, key=k_embed
        )
        self.backbone = eqx.nn.MLP(
            data_size + embed_size, data_size, width, depth, activation=jax.nn.relu, key=k_backbone
        )

    def __call__(self, t: ScalarLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        check_data("NoiseConditionalMLP", (self.data_size,), x)
        t = check_time("NoiseConditionalMLP", t)
        emb = self.embedding(jnp.reshape(t, (1,)).astype(x.dtype))
        return self.backbone(jnp.concatenate([x, emb]))


class TimeFreeMLP(eqx.Module):
    r"""Seed 001's score network: an MLP $x \mapsto s_\theta(x)$ that ignores time.

    For implicit (Hyvärinen) score matching and plain Langevin sampling of one fixed
    distribution. `net(t, x)` takes and ignores `t`, so the network fits the library's
    `score(t, x)` convention.

    The default activation is softplus, not the seed's LogSigmoid
    (`activation=jax.nn.log_sigmoid` gives the seed's network exactly). Both are smooth,
    which implicit score matching needs: its loss holds the trace of the Jacobian
    $\operatorname{tr} \nabla_x s_\theta(x)$, whose gradient with respect to $\theta$
    involves second derivatives of the activation, zero almost everywhere for ReLU.
    Softplus is $\log\sigma(x) + x$, so the two differ by a linear term.

    With the defaults (`width=64, depth=3`) and `data_size=2` it has 8,642 parameters.

    **Arguments:**

    - `data_size`: the dimension $d$ of one sample.
    - `width`: units per hidden layer.
    - `depth`: number of hidden layers.
    - `activation`: the hidden activation (smooth for implicit score matching).
    - `key`: a `jax.random` key for the initialisation.

    Called as `net(t, x)` with any `t` (ignored) and ONE sample `x` of shape
    `(data_size,)`.
    """

    mlp: eqx.nn.MLP
    data_size: int = eqx.field(static=True)

    def __init__(
        self,
        data_size: int,
        *,
        width: int = 64,
        depth: int = 3,
        activation: Callable = jax.nn.softplus,
        key: PRNGKeyArray,
    ):
        self.data_size = check_int("data_size", data_size)
        check_int("width", width)
        check_int("depth", depth, minimum=0)
        self.mlp = eqx.nn.MLP(
            data_size, data_size, width, depth, activation=_check_activation(activation), key=key
        )

    def __call__(self, t: ScalarLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        del t
        check_data("TimeFreeMLP", (self.data_size,), x)
        return self.mlp(x)
