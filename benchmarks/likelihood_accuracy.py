"""`log_prob` against the analytic density of the Gaussian mixtures of
tests/test_likelihood.py (exact scores, 100 test points, float32, default tolerances): the
figures in the README's "Log-likelihood" section.

    python benchmarks/likelihood_accuracy.py
"""

import pathlib
import sys

import jax
import jax.numpy as jnp
import jax.random as jr


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from test_likelihood import mixture, SDES  # noqa: E402

import scoresde as sd  # noqa: E402


def report(name: str, sde, dim: int) -> str:
    score = mixture(sde, dim)
    x = score.sample(jr.key(1), 100, 0.0)
    r = sd.log_prob(sde, score, x, return_info=True)
    density = jax.vmap(score.log_prob, in_axes=(None, 0))
    err = r.log_prob - density(0.0, x)
    # With the mixture's own density at T in place of the prior: the change of variables.
    cov_err = r.delta + density(sde.T, r.latent) - density(sde.default_eps, x)
    return (
        f"{name} d={dim}: mean error {float(err.mean()):+.4f}, mean |error| "
        f"{float(jnp.abs(err).mean()):.4f}, change-of-variables |error| "
        f"{float(jnp.abs(cov_err).mean()):.1e}, score evals/point "
        f"{float(r.stats['num_score_evals'].mean()):.0f}"
    )


if __name__ == "__main__":
    for name, sde in SDES.items():
        for dim in (2, 5):
            print(report(name, sde, dim))
