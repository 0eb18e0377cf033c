"""Multi-layer perceptron score networks for vector data (the tutorials' networks)."""

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._checks import check_key, static_number
from .._custom_types import Array, ArrayLike, Float, PRNGKeyArray, ScalarLike
from ._condition import (
    AbstractConditionEmbedding,
    condition_embedding,
    condition_key,
    embed_condition,
)
from ._embedding import SinusoidalEmbedding
from ._misc import check_data, check_int, check_time


def _check_activation(activation) -> Callable:
    if not callable(activation):
        raise TypeError(
            f"`activation` must be a callable such as jax.nn.relu, got {type(activation).__name__}."
        )
    return activation


class TimeMLP(eqx.Module):
    r"""The MLP (`ApproximateScore`) of the tutorial "Score-based generative models from
    scratch in JAX" (written for the Turing "Theory and Methodology Challenges Week"
    workshop): an MLP on the sample concatenated with time features.

    The input to the first layer is

    $$\big(x,\; t - \tfrac12,\; \cos 2\pi t\;[,\; \sin 2\pi f_j t,\; \cos 2\pi f_j t]
    \;[,\; e(c)]\big),$$

    then `depth` hidden layers of `width` units with `activation`, and a linear output of
    size `data_size`. With `num_fourier = n > 0`, $n$ extra fixed frequencies
    $f_j = 2^j$, $j = 0, \dots, n-1$ (one octave apart, a
    [`SinusoidalEmbedding`][scoresde.nn.SinusoidalEmbedding] with angular frequencies
    $2\pi$ to $2\pi\,2^{n-1}$) add sine and cosine features, $2n$ inputs in all; they help the
    network resolve fast changes of the score near $t = 0$. A conditional network
    (`num_classes` or `condition_size`) appends a learned embedding $e(c)$ of the condition
    $c$, of size `condition_embed_size`.

    The defaults (`width=256, depth=3, relu`) are the tutorial's network: for `data_size=2`
    it has 133,378 parameters; with `num_classes=10` it has 137,650 (a 16-vector per label
    and the null label, and 16 more inputs to the first layer).

    **Arguments:**

    - `data_size`: the dimension $d$ of one sample; the network maps `(d,)` to `(d,)`.
    - `width`: units per hidden layer.
    - `depth`: number of hidden layers (0 gives an affine map).
    - `activation`: the hidden activation.
    - `num_fourier`: number of extra Fourier frequencies (0 for the tutorial's features
      only).
    - `num_classes`: `None` (the default) for no labels, or the number of classes $K$:
      the network is then called as `net(t, x, c)` with ONE integer label `c` in
      $[0, K]$, where $K$ is the null label (no class) that classifier-free guidance trains
      and samples with. The label's embedding is a learned vector per label.
    - `condition_size`: `None` (the default), or the length $m$ of a float condition
      vector: the network is then called as `net(t, x, c)` with `c` of shape `(m,)`,
      embedded by a learned linear map. At most one of `num_classes` and `condition_size`.
    - `condition_embed_size`: the size of the condition's embedding (16); unused without a
      condition.
    - `key`: a `jax.random` key for the initialisation. The condition embedding takes a key
      derived apart, so the other layers do not depend on the condition arguments: those
      the embedding does not feed are the unconditional network's of the same key.

    Called as `net(t, x)` with a scalar `t` and ONE sample `x` of shape `(data_size,)`, or
    `net(t, x, c)` with ONE condition `c` when built with `num_classes` or
    `condition_size`; a mismatch (a condition missing, or given to an unconditional network,
    a float label, a batch of labels, a label out of $[0, K]$) is a ValueError or TypeError at
    the call.
    """

    mlp: eqx.nn.MLP
    fourier: SinusoidalEmbedding | None
    condition_embed: AbstractConditionEmbedding | None
    data_size: int = static_number()

    def __init__(
        self,
        data_size: int,
        *,
        width: int = 256,
        depth: int = 3,
        activation: Callable = jax.nn.relu,
        num_fourier: int = 0,
        num_classes: int | None = None,
        condition_size: int | None = None,
        condition_embed_size: int = 16,
        key: PRNGKeyArray,
    ):
        check_key(key)
        self.data_size = check_int("data_size", data_size)
        check_int("width", width)
        check_int("depth", depth, minimum=0)
        check_int("num_fourier", num_fourier, minimum=0)
        check_int("condition_embed_size", condition_embed_size)
        self.condition_embed = condition_embedding(
            num_classes, condition_size, condition_embed_size, key=condition_key(key)
        )
        if num_fourier > 0:
            top = 2 * math.pi * 2.0 ** (num_fourier - 1)
            self.fourier = SinusoidalEmbedding(2 * num_fourier, min_freq=2 * math.pi, max_freq=top)
        else:
            self.fourier = None
        in_size = data_size + 2 + 2 * num_fourier
        if self.condition_embed is not None:
            in_size += condition_embed_size
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

    def __call__(
        self, t: ScalarLike, x: Float[Array, " d"], condition: ArrayLike | None = None
    ) -> Float[Array, " d"]:
        check_data("TimeMLP", (self.data_size,), x)
        emb = embed_condition("TimeMLP", self.condition_embed, condition)
        feats = self.time_features(t).astype(x.dtype)
        parts = [x, feats] if emb is None else [x, feats, emb.astype(x.dtype)]
        return self.mlp(jnp.concatenate(parts))


class NoiseConditionalMLP(eqx.Module):
    r"""The `ScoreModel` of the NCSN toy-example tutorial (noise-conditional score networks,
    Song & Ermon 2019, on a toy Gaussian mixture): a noise-conditional MLP with a learned
    embedding of the conditioning input.

    The conditioning input $t$ goes through a learned embedding
    `Linear(1, embed_size) – ReLU – Linear(embed_size, embed_size)`; the embedding is
    concatenated with $x$ (and, for a conditional network, with a learned embedding of the
    condition $c$ of size `condition_embed_size`) and fed to
    `Linear(data_size + embed_size [+ condition_embed_size], width) – ReLU –
    Linear(width, data_size)`.

    The tutorial embeds the noise level $\sigma$ itself. Here the input is the diffusion time
    $t$, as for every network of the library. For the
    [`VESDE`][scoresde.VESDE] the noise level
    $\sigma(t) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^{t/T}$ has

    $$\log \sigma(t) = \log \sigma_{\min} + \frac tT \log\frac{\sigma_{\max}}{\sigma_{\min}},$$

    affine in $t$, and the first layer of the embedding is affine; so a learned embedding
    of $t$ is exactly the tutorial's $\sigma$-embedding on a log scale. It is better conditioned
    than raw $\sigma \in [0.1, 20]$, where the small noise levels, which need the most
    resolution, are squeezed into a few percent of the input range. To condition on a
    given $\sigma$, pass `t = sde.t_from_sigma(sigma)`.

    With the defaults (`embed_size=16, width=128`) and `data_size=2` it has 2,994
    parameters; with `num_classes=10`, 5,218 (a 16-vector per label and the null label,
    and 16 more inputs to the backbone).

    **Arguments:**

    - `data_size`: the dimension $d$ of one sample.
    - `embed_size`: size of the learned embedding of $t$.
    - `width`: hidden units of the backbone.
    - `depth`: hidden layers of the backbone (1, the tutorial's, by default). One layer is
      weak: on a two-Gaussian toy set (NCSN loss, 5000 steps) its annealed Langevin
      samples had energy distance 0.027 to held-out data, three layers < 0.001; the
      tutorial trains 30000 steps.
    - `num_classes`: `None` (the default) for no labels, or the number of classes $K$:
      the network is then called as `net(t, x, c)` with ONE integer label `c` in
      $[0, K]$, where $K$ is the null label (no class) of classifier-free guidance.
    - `condition_size`: `None` (the default), or the length $m$ of a float condition
      vector `c` of shape `(m,)`, embedded by a learned linear map. At most one of
      `num_classes` and `condition_size`.
    - `condition_embed_size`: the size of the condition's embedding (16); unused without a
      condition.
    - `key`: a `jax.random` key for the initialisation (the condition embedding's key is
      derived apart: an unconditional network does not depend on the condition arguments).

    Called as `net(t, x)` with a scalar `t` and ONE sample `x` of shape `(data_size,)`, or
    `net(t, x, c)` with ONE condition `c` when built with `num_classes` or
    `condition_size`.
    """

    embedding: eqx.nn.MLP
    backbone: eqx.nn.MLP
    condition_embed: AbstractConditionEmbedding | None
    data_size: int = static_number()

    def __init__(
        self,
        data_size: int,
        *,
        embed_size: int = 16,
        width: int = 128,
        depth: int = 1,
        num_classes: int | None = None,
        condition_size: int | None = None,
        condition_embed_size: int = 16,
        key: PRNGKeyArray,
    ):
        check_key(key)
        self.data_size = check_int("data_size", data_size)
        check_int("embed_size", embed_size)
        check_int("width", width)
        check_int("depth", depth)
        check_int("condition_embed_size", condition_embed_size)
        self.condition_embed = condition_embedding(
            num_classes, condition_size, condition_embed_size, key=condition_key(key)
        )
        in_size = data_size + embed_size
        if self.condition_embed is not None:
            in_size += condition_embed_size
        k_embed, k_backbone = jr.split(key)
        self.embedding = eqx.nn.MLP(
            1, embed_size, embed_size, 1, activation=jax.nn.relu, key=k_embed
        )
        self.backbone = eqx.nn.MLP(
            in_size, data_size, width, depth, activation=jax.nn.relu, key=k_backbone
        )

    def __call__(
        self, t: ScalarLike, x: Float[Array, " d"], condition: ArrayLike | None = None
    ) -> Float[Array, " d"]:
        check_data("NoiseConditionalMLP", (self.data_size,), x)
        t = check_time("NoiseConditionalMLP", t)
        cond = embed_condition("NoiseConditionalMLP", self.condition_embed, condition)
        emb = self.embedding(jnp.reshape(t, (1,)).astype(x.dtype))
        parts = [x, emb] if cond is None else [x, emb, cond.astype(x.dtype)]
        return self.backbone(jnp.concatenate(parts))


class TimeFreeMLP(eqx.Module):
    r"""The score network of M. F. Kasim's tutorial "Score-based generative model tutorial,
    part 1: without SDE" (2022): an MLP $x \mapsto s_\theta(x)$ that ignores time.

    For implicit (Hyvärinen) score matching and plain Langevin sampling of one fixed
    distribution. `net(t, x)` takes and ignores `t`, so the network fits the library's
    `score(t, x)` convention.

    The default activation is softplus, not the tutorial's LogSigmoid
    (`activation=jax.nn.log_sigmoid` gives the tutorial's network exactly). Both are smooth,
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
    data_size: int = static_number()

    def __init__(
        self,
        data_size: int,
        *,
        width: int = 64,
        depth: int = 3,
        activation: Callable = jax.nn.softplus,
        key: PRNGKeyArray,
    ):
        check_key(key)
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
