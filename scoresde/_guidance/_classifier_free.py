from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_callable
from .._condition import check_labels, check_null_label, real_number
from .._custom_types import Array, Data, ScalarLike


class ClassifierFreeGuidance(eqx.Module):
    r"""Classifier-free guidance (Ho & Salimans, 2021): a conditional score pushed away
    from the unconditional one,

    $$\tilde s(t, x, c) = (1 + w)\,s(t, x, c) - w\,s(t, x, \varnothing),$$

    with $\varnothing$ the null condition. $w = 0$ is the plain conditional score (the
    "guidance scale" of some libraries, such as diffusers, is $1 + w$); with
    exact scores $\tilde s = \nabla\log p_t(x \mid c) + w\,\nabla \log p_t(c \mid x)$, the
    score of $p_t(x \mid c)\,p_t(c \mid x)^w$, so samples concentrate where the class is
    unambiguous. (This tilts each $p_t$; the samples are not draws of
    $p_0(x \mid c)\,p_0(c \mid x)^w$, since the tilted $p_t$ are not one law diffused.)
    It is itself a conditional score, so every sampler takes it:
    `sample(sde, guided, sampler, shape, key=key, condition=labels)`.

    Each call evaluates `score` twice, on the condition and on the null condition, as one
    vmapped call of two (one batched network evaluation). A sampler's `num_score_evals`
    counts calls of the guided score.

    **Arguments:**

    - `score`: a conditional score `score(t, x, c)` that knows the null condition, such as
      a network trained with `fit(..., condition_dropout=p, null_condition=...)` or an
      exact [`ClassConditionalMixture`][scoresde.ClassConditionalMixture].
    - `scale`: the guidance weight $w$ (Ho & Salimans' $w$; `scale = 0` is no guidance,
      negative values move towards the unconditional model). An array leaf: changing it
      does not recompile.
    - `null_condition`: the condition meaning "none", shaped like one sample's condition
      and cast to its dtype: for a class-conditional model, its null label `num_classes`
      (checked).

    ??? cite "Reference"

        ```bibtex
        @inproceedings{ho2021classifierfree,
          title={Classifier-Free Diffusion Guidance},
          author={Ho, Jonathan and Salimans, Tim},
          booktitle={NeurIPS Workshop on Deep Generative Models}, year={2021}
        }
        ```
    """

    score: Callable
    scale: Array
    null_condition: Any

    def __init__(self, score: Callable, *, scale: float | ScalarLike, null_condition: Any):
        check_callable(score, call="(t, x, c)")
        if isinstance(scale, jax.core.Tracer):
            scale = jnp.asarray(scale, dtype=jnp.result_type(float))
        else:
            scale = jnp.asarray(real_number("scale", scale), dtype=jnp.result_type(float))
            if not jnp.isfinite(scale):
                raise ValueError(f"`scale` must be a finite number, got {float(scale)}.")
        if null_condition is None:
            raise ValueError(
                "`null_condition` is required: the condition meaning 'none' (for a model with "
                "num_classes=k, the null label k)."
            )
        null_condition = jax.tree.map(jnp.asarray, null_condition)
        check_labels(score, jax.tree.map(lambda n: n[None], null_condition))
        check_null_label(score, null_condition)
        self.score = score
        self.scale = scale
        self.null_condition = null_condition

    def __call__(self, t: ScalarLike, x: Data, c: Any) -> Data:
        def shapes(tree):
            return jax.tree.map(jnp.shape, tree)

        if jax.tree.structure(c) != jax.tree.structure(self.null_condition) or shapes(c) != shapes(
            self.null_condition
        ):
            raise ValueError(
                f"`null_condition` (shapes {shapes(self.null_condition)}) must look like one "
                f"sample's condition (shapes {shapes(c)})."
            )
        null = jax.tree.map(
            lambda n, a: jnp.asarray(n, jnp.asarray(a).dtype), self.null_condition, c
        )
        pair = jax.tree.map(lambda a, n: jnp.stack([jnp.asarray(a), n]), c, null)
        both = jax.vmap(lambda cc: self.score(t, x, cc))(pair)
        w = self.scale.astype(both.dtype)
        return (1 + w) * both[0] - w * both[1]
