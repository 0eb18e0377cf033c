import jax
import jax.numpy as jnp


def ema_update(ema, params, rate: float, step):
    r"""One exponential-moving-average step $\bar\theta \leftarrow \beta\bar\theta +
    (1-\beta)\theta$ with the warm-up $\beta_k = \min(\text{rate}, (1+k)/(10+k))$ of
    TensorFlow's `ExponentialMovingAverage`, so short runs are not dominated by the
    initial weights."""
    beta = jnp.minimum(rate, (1.0 + step) / (10.0 + step))
    return jax.tree.map(lambda e, p: beta * e + (1 - beta) * p, ema, params)
