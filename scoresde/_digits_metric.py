r"""An image-quality metric for the 8×8 digits: the Fréchet distance between the feature
statistics of a small classifier trained on the digits themselves.

The Fréchet Inception Distance (Heusel et al., 2017) compares the Gaussian fits of
Inception-v3 features of two image sets. Inception does not fit 8×8 images, so, as is
usual for MNIST, the features come from a classifier trained on the data set itself: here
an MLP 64 → 128 → 64 → 10 (ReLU) trained on the 1497 training digits of
`load_digits(split="train")`, whose 64 penultimate activations are the features. It is
trained once (about 2 s, a fixed key) and cached on disk.
"""

import functools as ft
import os
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax


_VERSION = 1
_STEPS = 3000


class _Classifier(eqx.Module):
    hidden: eqx.nn.MLP
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jr.split(key)
        self.hidden = eqx.nn.MLP(
            64, 64, 128, 1, activation=jax.nn.relu, final_activation=jax.nn.relu, key=k1
        )
        self.head = eqx.nn.Linear(64, 10, key=k2)

    def features(self, x):
        return self.hidden(jnp.reshape(x, (64,)))

    def __call__(self, x):
        return self.head(self.features(x))


def _cache_file() -> pathlib.Path:
    root = os.environ.get("SCORESDE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "scoresde"
    )
    return pathlib.Path(root) / f"digits_classifier_v{_VERSION}.eqx"


def _train() -> _Classifier:
    from .datasets import load_digits

    x, y = load_digits(split="train")
    model = _Classifier(jr.key(0))
    optimizer = optax.adamw(1e-3, weight_decay=1e-4)
    state = optimizer.init(eqx.filter(model, eqx.is_array))
    # Light augmentation (a pixel of shift, noise) so features are robust to what
    # generated digits typically get slightly wrong.

    def loss(model, key):
        k1, k2 = jr.split(key)
        shift = jr.randint(k1, (2,), -1, 2)
        xa = jnp.where(jr.bernoulli(k1, 0.5), jnp.roll(x, shift, axis=(2, 3)), x)
        xa = xa + 0.05 * jr.normal(k2, x.shape)
        logits = jax.vmap(model)(xa)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    params, static = eqx.partition(model, eqx.is_array)

    @jax.jit
    def steps(params, state):
        def body(carry, i):
            params, state = carry
            grads = jax.grad(lambda p: loss(eqx.combine(p, static), jr.fold_in(jr.key(1), i)))(
                params
            )
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, state), _ = jax.lax.scan(body, (params, state), jnp.arange(_STEPS))
        return params

    return eqx.combine(steps(params, state), static)


@ft.cache
def digits_classifier() -> _Classifier:
    """The feature network of [`digits_frechet_distance`][scoresde.metrics.digits_frechet_distance]:
    trained on first use (about 2 s) and cached in `$SCORESDE_CACHE` (default
    `~/.cache/scoresde`). Called on ONE image `(1, 8, 8)` it returns the 10 logits;
    `.features(x)` the 64 features. Test accuracy on `load_digits(split="test")`:
    98.7%.

    **Returns:**

    The classifier, an `eqx.Module` (the same object on every call in a process).
    """
    path = _cache_file()
    like = _Classifier(jr.key(0))
    if path.is_file():
        try:
            return eqx.tree_deserialise_leaves(path, like)
        except Exception:  # a stale or broken cache is retrained
            pass
    model = _train()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        eqx.tree_serialise_leaves(tmp, model)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: use it uncached
    return model


def _images(name: str, x) -> jax.Array:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[1:] != (1, 8, 8):
        raise ValueError(f"`{name}` must be digits of shape (n, 1, 8, 8), got {x.shape}.")
    if len(x) < 2:
        raise ValueError(f"`{name}` needs at least 2 images for a covariance, got {len(x)}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`{name}` holds NaN or inf.")
    return jnp.asarray(np.clip(x, 0.0, 1.0))


@eqx.filter_jit
def _features(model, x):
    return jax.vmap(model.features)(x)


def digits_features(images) -> np.ndarray:
    """The classifier's 64 features of each digit (values clipped to [0, 1]).

    **Arguments:**

    - `images`: digits `(n, 1, 8, 8)` in [0, 1], at least 2 of them.

    **Returns:**

    The features, float64 `(n, 64)`.
    """
    return np.asarray(_features(digits_classifier(), _images("images", images)), np.float64)


def digits_predictions(images) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's digit for each image and its softmax probability. A sample whose
    confidence is high looks like that digit to the classifier.

    **Arguments:**

    - `images`: digits `(n, 1, 8, 8)` in [0, 1], at least 2 of them.

    **Returns:**

    `(labels, confidence)`: integer labels `(n,)` and float64 probabilities `(n,)`.
    """
    model = digits_classifier()
    logits = eqx.filter_jit(lambda m, x: jax.vmap(m)(x))(model, _images("images", images))
    p = np.asarray(jax.nn.softmax(logits, axis=-1), np.float64)
    return p.argmax(-1), p.max(-1)


def frechet_distance(features_a, features_b) -> float:
    r"""The Fréchet distance between Gaussian fits of two feature sets `(n, k)`, `(m, k)`:

    $$\|\mu_a - \mu_b\|^2 + \operatorname{tr}\big(\Sigma_a + \Sigma_b
      - 2(\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2})^{1/2}\big),$$

    in float64 with symmetric eigendecompositions (no complex square roots).

    **Arguments:**

    - `features_a`, `features_b`: feature sets `(n, k)` and `(m, k)`.

    **Returns:**

    The distance, a Python float (0 for identical sets, up to rounding).
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be (n, k) and (m, k), got {a.shape} and {b.shape}.")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    lam, vec = np.linalg.eigh(cov_a)
    root_a = (vec * np.sqrt(np.clip(lam, 0, None))) @ vec.T
    inner = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sum(np.sqrt(np.clip(inner, 0, None)))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def digits_frechet_distance(samples, reference=None) -> float:
    r"""The Fréchet distance of digit samples from real digits, in the features of a small
    classifier trained on the digits ("FID" for 8×8 digits; lower is better).

    The recipe of the Fréchet Inception Distance (Heusel et al., 2017) with the feature
    network replaced, as is usual for MNIST, by one trained on the data set itself:
    [`digits_classifier`][scoresde.metrics.digits_classifier], an MLP
    64 → 128 → 64 → 10 trained on the 1497 digits of `load_digits(split="train")`; the
    64 penultimate activations are the features. Samples are clipped to [0, 1] first.

    **Its floor.** The distance has a positive bias that shrinks with the number of
    samples, so compare at equal counts. The 300 held-out real digits
    (`load_digits(split="test")`) score 0.84 against the training set, their first 64
    score 4.3: that is the floor a perfect model reaches with 300 (64) samples. The
    held-out digits blurred by a 3×3 box filter score 53, with their pixels shuffled 90,
    with N(0, 0.1²) noise added 2.1. The classifier labels 98.7% of the held-out digits
    correctly.

    **Arguments:**

    - `samples`: generated digits `(n, 1, 8, 8)` with values in [0, 1], n >= 2.
    - `reference`: real digits to compare with; default the training split.

    **Returns:** a float.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{heusel2017gans,
          title={{GANs} Trained by a Two Time-Scale Update Rule Converge to a Local
                 {Nash} Equilibrium},
          author={Heusel, Martin and Ramsauer, Hubert and Unterthiner, Thomas and
                  Nessler, Bernhard and Hochreiter, Sepp},
          booktitle={NeurIPS}, year={2017}
        }
        ```
    """
    if reference is None:
        from .datasets import load_digits

        reference = load_digits(split="train")[0]
    return frechet_distance(digits_features(samples), digits_features(reference))
