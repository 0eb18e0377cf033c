"""Matplotlib figures for 2-D samples, scores, trajectories and training curves.

Every function accepts NumPy or JAX arrays and returns the `matplotlib.figure.Figure` it drew
on. Functions that draw one panel take `ax=None`: given an `Axes` they draw on it (and return
its figure), otherwise they open a new figure with `plt.subplots()`. A figure opened here
stays open in pyplot until the caller closes it: call [`save`][scoresde.plotting.save]
(which saves and closes), or `plt.close(fig)`. In a notebook, end the line with `;` so an
inline backend does not show the figure twice.
[`animate_reverse`][scoresde.plotting.animate_reverse] closes its own figure.

Nothing here selects a backend: set `MPLBACKEND=Agg` (or call `matplotlib.use("Agg")`) to
plot without a display.

Non-finite values are dropped with a `UserWarning` saying how many were dropped: a sample
(row) of `samples`/`reference` with any NaN or inf coordinate, a path of a trajectory with
any NaN or inf snapshot, a NaN or inf entry of a loss history. Empty input, or input that is
all non-finite, raises `ValueError`.
"""

import math
import os
import pathlib
import secrets
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure


__all__ = [
    "animate_reverse",
    "plot_comparison",
    "plot_heatmap",
    "plot_image_grid",
    "plot_loss",
    "plot_scatter",
    "plot_score",
    "plot_trajectories",
    "save",
]

# The SGM-from-scratch tutorial's kernel exp(-350 d^2) is a Gaussian of standard deviation
# 1/sqrt(700).
_TUTORIAL_BANDWIDTH = 1.0 / math.sqrt(700.0)
_REFERENCE_STYLE = dict(color="0.6", s=1, alpha=0.3, linewidths=0, zorder=1)

AreaLike = tuple[float, float] | tuple[tuple[float, float], tuple[float, float]]


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _points(x: Any, name: str, *, allow_none: bool = False) -> np.ndarray | None:
    """`x` as a float64 `(n, 2)` NumPy array without non-finite rows."""
    if x is None:
        if allow_none:
            return None
        raise ValueError(f"`{name}` must be an array of shape (n, 2), got None.")
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(
            f"`{name}` must be 2-D points of shape (n, 2), got shape {arr.shape}. "
            "Plotting functions show two-dimensional data only; project or select two "
            "coordinates first (for example `x[:, :2]`)."
        )
    keep = np.all(np.isfinite(arr), axis=1)
    if not keep.all():
        warnings.warn(
            f"`{name}`: dropped {int((~keep).sum())} of {arr.shape[0]} points with NaN or "
            "inf coordinates.",
            stacklevel=3,
        )
        arr = arr[keep]
    if arr.shape[0] == 0:
        raise ValueError(f"`{name}` has no finite points to plot (shape {np.shape(x)}).")
    return arr


def _trajectory(trajectory: Any, ts: Any, name: str = "trajectory"):
    """`trajectory` as float64 `(n, k, 2)` without non-finite paths, and `ts` as `(k,)`."""
    arr = np.asarray(trajectory, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] != 2:
        raise ValueError(
            f"`{name}` must have shape (n, k, 2): n paths of k snapshots of 2-D points, as "
            f"`sample(..., saveat=k, return_info=True).trajectory`; got shape {arr.shape}."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"`{name}` is empty (shape {arr.shape}); sample with `saveat=k`.")
    if ts is not None:
        ts = np.asarray(ts, dtype=np.float64)
        if ts.shape != (arr.shape[1],):
            raise ValueError(
                f"`ts` must have shape (k,) = ({arr.shape[1]},), one time per snapshot of "
                f"`{name}`, got shape {ts.shape}."
            )
    keep = np.all(np.isfinite(arr), axis=(1, 2))
    if not keep.all():
        warnings.warn(
            f"`{name}`: dropped {int((~keep).sum())} of {arr.shape[0]} paths with NaN or inf "
            "values.",
            stacklevel=3,
        )
        arr = arr[keep]
    if arr.shape[0] == 0:
        raise ValueError(f"`{name}` has no finite path to plot.")
    return arr, ts


def _area(area: Any, name: str = "area") -> tuple[float, float, float, float]:
    """`(lo, hi)` (the same for both axes) or `((xlo, xhi), (ylo, yhi))` as a 4-tuple."""
    try:
        a = np.asarray(area, dtype=np.float64)
    except (TypeError, ValueError):
        a = np.zeros((0,))
    if a.shape == (2,):
        a = np.stack([a, a])
    if a.shape != (2, 2) or not np.all(np.isfinite(a)) or np.any(a[:, 0] >= a[:, 1]):
        raise ValueError(
            f"`{name}` must be (lo, hi) with lo < hi, or ((xlo, xhi), (ylo, yhi)), got {area!r}."
        )
    return float(a[0, 0]), float(a[0, 1]), float(a[1, 0]), float(a[1, 1])


def _auto_area(*point_sets: np.ndarray | None) -> tuple[float, float, float, float]:
    """A box holding the central 99% of the points along each axis (all of them when there
    are fewer than 200), plus a 10% margin.

    Robust to a few divergent samples, which would otherwise shrink everything to a dot.
    """
    pts = np.concatenate([p for p in point_sets if p is not None and p.size], axis=0)
    if pts.shape[0] < 200:  # too few points for a meaningful 0.5% tail
        lo, hi = pts.min(axis=0), pts.max(axis=0)
    else:
        lo, hi = np.percentile(pts, [0.5, 99.5], axis=0)
    centre, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, 1e-3) * 1.1
    return (
        float(centre[0] - half[0]),
        float(centre[0] + half[0]),
        float(centre[1] - half[1]),
        float(centre[1] + half[1]),
    )


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}.")
    return int(value)


def _figure_and_axes(ax: Axes | None, figsize=(5, 5)) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    if not isinstance(ax, Axes):
        raise ValueError(f"`ax` must be a matplotlib Axes or None, got {type(ax).__name__}.")
    return ax.get_figure(), ax


def _set_limits(ax: Axes, box: tuple[float, float, float, float]) -> None:
    ax.set_xlim(box[0], box[1])
    ax.set_ylim(box[2], box[3])


# --------------------------------------------------------------------------------------------
# Heatmap
# --------------------------------------------------------------------------------------------


@jax.jit
def _kde_chunks(points, weights, xs, ys, bandwidth):
    """Sum over chunks of `points` (m, c, 2) of a separable Gaussian kernel on the grid.

    $\\exp(-|g - p|^2 / 2h^2) = \\exp(-(g_x - p_x)^2 / 2h^2) \\exp(-(g_y - p_y)^2 / 2h^2)$, so
    the heatmap of a chunk is one matrix product of a `(c, R_y)` and a `(c, R_x)` matrix.
    """
    inv = -0.5 / bandwidth**2

    def body(acc, chunk):
        p, w = chunk
        kx = jnp.exp(inv * (xs[None, :] - p[:, 0:1]) ** 2)  # (c, R_x)
        ky = jnp.exp(inv * (ys[None, :] - p[:, 1:2]) ** 2) * w[:, None]  # (c, R_y)
        return acc + ky.T @ kx, None

    init = jnp.zeros((ys.shape[0], xs.shape[0]), points.dtype)
    out, _ = jax.lax.scan(body, init, (points, weights))
    return out


def _kde_grid(
    points: np.ndarray,
    box: tuple[float, float, float, float],
    resolution: int,
    bandwidth: float,
    chunk: int = 4096,
) -> np.ndarray:
    """Gaussian KDE of `points` at the pixel centres of `box`; shape `(R, R)`, `[y, x]`."""
    xlo, xhi, ylo, yhi = box
    xs = xlo + (np.arange(resolution) + 0.5) * (xhi - xlo) / resolution
    ys = ylo + (np.arange(resolution) + 0.5) * (yhi - ylo) / resolution
    n = points.shape[0]
    # Pad to a power of two (at most `chunk`) times a whole number of chunks, so that calls
    # with similar sample counts reuse one compilation.
    size = min(chunk, 1 << max(n - 1, 1).bit_length())
    m = -(-n // size)
    padded = np.zeros((m * size, 2), np.float32)
    padded[:n] = points
    weights = np.zeros((m * size,), np.float32)
    weights[:n] = 1.0
    hm = _kde_chunks(
        jnp.asarray(padded.reshape(m, size, 2)),
        jnp.asarray(weights.reshape(m, size)),
        jnp.asarray(xs, jnp.float32),
        jnp.asarray(ys, jnp.float32),
        jnp.float32(bandwidth),
    )
    # A density: each sample contributes a normalised 2-D Gaussian.
    return np.asarray(hm, np.float64) / (n * 2 * np.pi * bandwidth**2)


def plot_heatmap(
    samples: Any,
    *,
    area: AreaLike = (-2, 2),
    resolution: int = 256,
    bandwidth: float | None = None,
    ax: Axes | None = None,
    cmap: str = "viridis",
) -> Figure:
    r"""Kernel-density heatmap of 2-D samples.

    The figure of `plot_heatmap` in the tutorial "Score-based generative models from scratch
    in JAX" (the SGM-from-scratch tutorial). Each pixel shows
    $\frac{1}{n}\sum_i \mathcal{N}(g; x_i, h^2 I)$ at its centre $g$: an exact Gaussian
    kernel density estimate, not a smoothed histogram. The kernel is separable,
    so the sum over samples is a matrix product per chunk of 4096 samples, jitted in JAX:
    $10^5$ samples on a $256^2$ grid take about 0.1 s on 2 CPU cores, after a one-off
    compilation of about 1 s (sample counts are padded, so similar counts share it).

    **Arguments:**

    - `samples`: shape `(n, 2)`, NumPy or JAX. Rows with NaN or inf are dropped with a warning.
    - `area`: the square `(lo, hi)` shown on both axes, or `((xlo, xhi), (ylo, yhi))`.
    - `resolution`: pixels along each axis.
    - `bandwidth`: the kernel's standard deviation $h$. Default: that tutorial's kernel
      $\exp(-350\,d^2)$, i.e. $h = 1/\sqrt{700} \approx 0.038$, or one pixel width if that
      is larger (a kernel narrower than a pixel would miss samples between pixel centres).
    - `ax`: the `Axes` to draw on; a new figure if `None`.
    - `cmap`: a matplotlib colormap name (that tutorial's is seaborn's `"mako_r"`, available
      once seaborn is imported).

    **Returns:**

    The `Figure`. The image is `ax.images[-1]`; its array is the density, indexed `[y, x]`
    with `origin="lower"`.
    """
    pts = _points(samples, "samples")
    box = _area(area)
    resolution = _positive_int(resolution, "resolution", 2)
    pixel = max(box[1] - box[0], box[3] - box[2]) / resolution
    if bandwidth is None:
        bandwidth = max(_TUTORIAL_BANDWIDTH, pixel)
    elif not (isinstance(bandwidth, (int, float, np.floating)) and 0 < bandwidth < math.inf):
        raise ValueError(f"`bandwidth` must be a positive float or None, got {bandwidth!r}.")
    hm = _kde_grid(pts, box, resolution, float(bandwidth))
    fig, ax = _figure_and_axes(ax)
    ax.imshow(
        hm,
        cmap=cmap,
        interpolation="nearest",
        origin="lower",
        extent=box,
        aspect="equal",
    )
    _set_limits(ax, box)
    return fig


# --------------------------------------------------------------------------------------------
# Scatter, score field, trajectories
# --------------------------------------------------------------------------------------------


def plot_scatter(
    samples: Any,
    *,
    ax: Axes | None = None,
    s: float = 1,
    alpha: float = 0.5,
    area: AreaLike | None = None,
    reference: Any = None,
) -> Figure:
    """Scatter plot of 2-D samples, with optional reference points underneath in grey.

    **Arguments:**

    - `samples`: shape `(n, 2)`. Rows with NaN or inf are dropped with a warning.
    - `ax`: the `Axes` to draw on; a new figure if `None`.
    - `s`, `alpha`: marker size and opacity of the samples.
    - `area`: `(lo, hi)` for both axes or `((xlo, xhi), (ylo, yhi))`; `None` lets matplotlib
      fit every point.
    - `reference`: optional points `(m, 2)` (for example the training data), drawn first,
      in grey.

    **Returns:**

    The `Figure`.
    """
    pts = _points(samples, "samples")
    ref = _points(reference, "reference", allow_none=True)
    box = None if area is None else _area(area)
    fig, ax = _figure_and_axes(ax)
    if ref is not None:
        ax.scatter(ref[:, 0], ref[:, 1], label="reference", **_REFERENCE_STYLE)
    ax.scatter(pts[:, 0], pts[:, 1], s=s, alpha=alpha, linewidths=0, zorder=2, label="samples")
    if box is not None:
        _set_limits(ax, box)
    ax.set_aspect("equal")
    return fig


@eqx.filter_jit
def _score_on_grid(score, t, grid):
    return jax.vmap(lambda x: score(t, x))(grid)


def plot_score(
    score: Callable,
    t: float,
    *,
    area: AreaLike = (-3, 3),
    num: int = 16,
    ax: Axes | None = None,
    normalise: bool = False,
    reference: Any = None,
) -> Figure:
    r"""Quiver plot of a score field $x \mapsto s(t, x)$ on a `num` x `num` grid.

    As the SGM-from-scratch tutorial's `plot_score`, but for a library score: `score(t, x)`
    takes ONE 2-D point `x` (no batch axis); it is vmapped over the grid and jitted here
    (`equinox.filter_jit`, so networks and exact scores with array leaves work). Arrows are
    auto-scaled by matplotlib; non-finite arrows are left out.

    **Arguments:**

    - `score`: a callable `score(t, x)` with `x` of shape `(2,)`, returning shape `(2,)`.
    - `t`: the diffusion time.
    - `area`: `(lo, hi)` for both axes or `((xlo, xhi), (ylo, yhi))`.
    - `num`: grid points along each axis.
    - `ax`: the `Axes` to draw on; a new figure if `None`.
    - `normalise`: draw every arrow at the same length, coloured by $\log_{10}$ of the
      score's norm (with a colour bar). Near the data at small `t` the score is huge
      ($\propto 1/s(t)$) and auto-scaled arrows shrink to dots elsewhere; normalised ones
      show the direction everywhere.
    - `reference`: optional points `(m, 2)` (for example the data) drawn underneath in grey.

    **Returns:**

    The `Figure`.
    """
    ref = _points(reference, "reference", allow_none=True)
    if not callable(score):
        raise ValueError(f"`score` must be a callable score(t, x), got {type(score).__name__}.")
    box = _area(area)
    num = _positive_int(num, "num", 2)
    t_arr = jnp.asarray(t, dtype=jnp.result_type(float))
    if t_arr.shape != ():
        raise ValueError(f"`t` must be a scalar time, got shape {t_arr.shape}.")
    point = jax.ShapeDtypeStruct((2,), jnp.result_type(float))
    try:
        out = eqx.filter_eval_shape(score, t_arr, point)
    except Exception as e:
        raise ValueError(
            "`score` failed on one 2-D point of shape (2,). It is called as score(t, x) on ONE "
            f"sample, without a batch axis. It raised {type(e).__name__}: {e}"
        ) from e
    if getattr(out, "shape", None) != (2,):
        got = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"`score(t, x)` must return shape (2,) for x of shape (2,), got {got}.")
    gx, gy = np.meshgrid(np.linspace(box[0], box[1], num), np.linspace(box[2], box[3], num))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    field = np.asarray(_score_on_grid(score, t_arr, jnp.asarray(grid, t_arr.dtype)), np.float64)
    field = np.ma.masked_invalid(field)
    fig, ax = _figure_and_axes(ax, figsize=(6, 5) if normalise else (5, 5))
    if ref is not None:
        ax.scatter(ref[:, 0], ref[:, 1], **_REFERENCE_STYLE)
    if normalise:
        norm = np.ma.sqrt(np.ma.sum(field**2, axis=1))
        unit = field / np.ma.maximum(norm, 1e-30)[:, None]
        arrows = ax.quiver(
            grid[:, 0],
            grid[:, 1],
            unit[:, 0],
            unit[:, 1],
            np.ma.log10(np.ma.maximum(norm, 1e-30)),
            cmap="viridis",
            pivot="mid",
            zorder=2,
        )
        fig.colorbar(arrows, ax=ax, label="log10 |score|")
    else:
        ax.quiver(grid[:, 0], grid[:, 1], field[:, 0], field[:, 1])
    dx, dy = (box[1] - box[0]) / (num - 1), (box[3] - box[2]) / (num - 1)
    _set_limits(ax, (box[0] - dx / 2, box[1] + dx / 2, box[2] - dy / 2, box[3] + dy / 2))
    ax.set_aspect("equal")
    ax.set_title(f"score at t = {float(t):.3g}")
    return fig


def plot_trajectories(
    trajectory: Any,
    ts: Any = None,
    *,
    num: int = 20,
    ax: Axes | None = None,
    reference: Any = None,
) -> Figure:
    """Paths of the first `num` samples through the snapshots of a sampler run.

    Each path is coloured along its length by time (or by snapshot index when `ts` is not
    given), with a colour bar; starts are marked by hollow circles, ends by black dots.

    **Arguments:**

    - `trajectory`: shape `(n, k, 2)`, as `sample(..., saveat=k, return_info=True)
      .trajectory`. Paths with NaN or inf are dropped with a warning.
    - `ts`: optional shape `(k,)`, the time of each snapshot (`SampleResult.ts`).
    - `num`: how many paths to draw (the first `num`; all if there are fewer).
    - `ax`: the `Axes` to draw on; a new figure if `None`.
    - `reference`: optional points `(m, 2)` drawn underneath in grey.

    **Returns:**

    The `Figure`.
    """
    traj, ts = _trajectory(trajectory, ts)
    num = _positive_int(num, "num")
    ref = _points(reference, "reference", allow_none=True)
    paths = traj[:num]
    k = paths.shape[1]
    times = ts if ts is not None else np.arange(k, dtype=np.float64)
    fig, ax = _figure_and_axes(ax, figsize=(6, 5))
    if ref is not None:
        ax.scatter(ref[:, 0], ref[:, 1], label="reference", **_REFERENCE_STYLE)
    if k > 1:
        segments = np.stack([paths[:, :-1], paths[:, 1:]], axis=2).reshape(-1, 2, 2)
        colour = np.tile((times[:-1] + times[1:]) / 2, paths.shape[0])
        lines = LineCollection(segments, cmap="viridis", linewidths=1, alpha=0.8, zorder=2)
        lines.set_array(colour)
        ax.add_collection(lines)
        fig.colorbar(lines, ax=ax, label="t" if ts is not None else "snapshot")
    start, end = (f" (t = {times[i]:.3g})" if ts is not None else "" for i in (0, -1))
    ax.scatter(
        paths[:, 0, 0],
        paths[:, 0, 1],
        s=20,
        facecolors="none",
        edgecolors="tab:red",
        zorder=3,
        label="start" + start,
    )
    ax.scatter(paths[:, -1, 0], paths[:, -1, 1], s=12, c="black", zorder=4, label="end" + end)
    ax.autoscale_view()
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8, markerscale=1.5)
    return fig


# --------------------------------------------------------------------------------------------
# Training curve
# --------------------------------------------------------------------------------------------


def plot_loss(
    history: Any,
    *,
    steps: Any = None,
    ax: Axes | None = None,
    smooth: int | None = None,
) -> Figure:
    """Training loss per step, with a trailing running mean; log-scale y if all positive.

    **Arguments:**

    - `history`: 1-D sequence of losses. NaN or inf entries are dropped with a warning.
    - `steps`: optional 1-D x-values of the same length (for a loss logged every few steps);
      default `0, 1, 2, ...`.
    - `ax`: the `Axes` to draw on; a new figure if `None`.
    - `smooth`: the running mean's window, in entries; `None` picks `max(1, len // 50)`;
      `0` or `1` draws no running mean.

    **Returns:**

    The `Figure`.
    """
    loss = np.asarray(history, dtype=np.float64)
    if loss.ndim != 1 or loss.shape[0] == 0:
        raise ValueError(f"`history` must be a non-empty 1-D sequence, got shape {loss.shape}.")
    if steps is None:
        x = np.arange(loss.shape[0], dtype=np.float64)
    else:
        x = np.asarray(steps, dtype=np.float64)
        if x.shape != loss.shape:
            raise ValueError(
                f"`steps` must have the shape of `history`, {loss.shape}, got {x.shape}."
            )
    keep = np.isfinite(loss) & np.isfinite(x)
    if not keep.all():
        warnings.warn(
            f"`history`: dropped {int((~keep).sum())} of {loss.shape[0]} NaN or inf losses "
            f"(first at index {int(np.argmin(keep))}).",
            stacklevel=2,
        )
        loss, x = loss[keep], x[keep]
    if loss.shape[0] == 0:
        raise ValueError("`history` has no finite loss to plot.")
    if smooth is None:
        smooth = max(1, loss.shape[0] // 50)
    smooth = _positive_int(smooth, "smooth", 0)
    fig, ax = _figure_and_axes(ax, figsize=(6, 4))
    ax.plot(x, loss, lw=0.8, alpha=0.4 if smooth > 1 else 1.0, label="loss")
    if 1 < smooth <= loss.shape[0]:
        c = np.concatenate([[0.0], np.cumsum(loss)])
        mean = (c[smooth:] - c[:-smooth]) / smooth
        ax.plot(x[smooth - 1 :], mean, lw=1.5, color="C1", label=f"running mean ({smooth})")
        ax.legend(fontsize=8)
    if np.all(loss > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    return fig


# --------------------------------------------------------------------------------------------
# Several samplers side by side
# --------------------------------------------------------------------------------------------


def _marker(n: int) -> tuple[float, float]:
    """Marker size and opacity for `n` points: dots for thousands, visible marks for tens
    (a set of 100 drawn with the 1-point dots of 5000 all but vanishes)."""
    size = float(np.clip(2000.0 / max(n, 1), 1.0, 16.0))
    return size, (0.5 if n >= 2000 else 0.8)


def _widen_for_samples(box, sample_sets) -> tuple[float, float, float, float]:
    """`box` (the reference's) grown to hold each sample set's central 99% too, by at most
    half the box's size on each side, so samples just beyond the data are not cut at the
    edge while a diverged sampler still cannot squash the view."""
    if not sample_sets:
        return box
    lo, hi = np.array([box[0], box[2]]), np.array([box[1], box[3]])
    size = hi - lo
    inner = _auto_area(*sample_sets)
    s_lo, s_hi = np.array([inner[0], inner[2]]), np.array([inner[1], inner[3]])
    new_lo = np.maximum(np.minimum(lo, s_lo), lo - 0.5 * size)
    new_hi = np.minimum(np.maximum(hi, s_hi), hi + 0.5 * size)
    return float(new_lo[0]), float(new_hi[0]), float(new_lo[1]), float(new_hi[1])


def plot_comparison(
    samples_by_name: Mapping[str, Any],
    *,
    reference: Any = None,
    area: AreaLike | None = None,
    metrics: Mapping[str, str] | None = None,
    kind: str = "scatter",
    ncols: int | None = None,
) -> Figure:
    """Side-by-side panels of 2-D samples, one per sampler, sharing the axes.

    **Arguments:**

    - `samples_by_name`: a dict from a panel title (the sampler's name) to samples `(n, 2)`.
    - `reference`: optional points `(m, 2)`, shown in their own first panel titled
      "reference".
    - `area`: `(lo, hi)` for both axes or `((xlo, xhi), (ylo, yhi))`. Default: a box holding
      the central 99% of the reference plus a 10% margin, grown to hold the samples'
      central 99% too by at most half its size each way (so samples just past the data
      are not cut at the edge, and one diverged sampler does not squash the others);
      without a reference, the box of all samples.

    Markers grow as the number of points falls (1-point dots for thousands, up to 16 for
    a hundred or fewer), so a small reference set stays visible.
    - `metrics`: optional dict from some of the names to a short string (for example
      `"MMD 0.012"`), shown as a second line of that panel's title.
    - `kind`: `"scatter"` ([`plot_scatter`][scoresde.plotting.plot_scatter]) or `"heatmap"`
      ([`plot_heatmap`][scoresde.plotting.plot_heatmap]).
    - `ncols`: panels per row; default `min(#panels, 4)`.

    **Returns:**

    A new `Figure`; the caller closes it.
    """
    if not isinstance(samples_by_name, Mapping) or len(samples_by_name) == 0:
        raise ValueError("`samples_by_name` must be a non-empty dict {name: samples (n, 2)}.")
    if kind not in ("scatter", "heatmap"):
        raise ValueError(f"`kind` must be 'scatter' or 'heatmap', got {kind!r}.")
    metrics = {} if metrics is None else dict(metrics)
    unknown = set(metrics) - set(samples_by_name)
    if unknown:
        raise ValueError(
            f"`metrics` has names that are not in `samples_by_name`: {sorted(map(str, unknown))}."
        )
    panels = {}
    if reference is not None:
        panels["reference"] = _points(reference, "reference")
    for name, x in samples_by_name.items():
        panels[name] = _points(x, f"samples_by_name[{name!r}]")
    if area is None:
        ref = panels.get("reference") if reference is not None else None
        box = _auto_area(ref) if ref is not None else _auto_area(*panels.values())
        if ref is not None:
            box = _widen_for_samples(box, [p for n, p in panels.items() if n != "reference"])
    else:
        box = _area(area)
    ncols = min(len(panels), 4) if ncols is None else _positive_int(ncols, "ncols")
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.2 * ncols, 3.4 * nrows), squeeze=False, sharex=True, sharey=True
    )
    for i, (ax, (name, pts)) in enumerate(zip(axes.flat, panels.items(), strict=False)):
        is_ref = reference is not None and i == 0
        if kind == "heatmap":
            plot_heatmap(pts, area=(box[:2], box[2:]), resolution=128, ax=ax)
        elif is_ref:
            size, alpha = _marker(len(pts))
            ax.scatter(pts[:, 0], pts[:, 1], s=size, alpha=alpha, linewidths=0, color="0.4")
        else:
            size, alpha = _marker(len(pts))
            plot_scatter(pts, ax=ax, s=size, alpha=alpha)
        _set_limits(ax, box)
        ax.set_aspect("equal")
        title = str(name) if is_ref or name not in metrics else f"{name}\n{metrics[name]}"
        ax.set_title(title, fontsize=9)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_image_grid(
    images: Any,
    *,
    ncols: int | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
    titles: Any = None,
    cmap: str = "gray",
    scale: float = 0.6,
) -> Figure:
    """A grid of images `(n, C, H, W)` (channel first, 1 or 3 channels), one per cell,
    without axes: samples of an image model at a glance.

    **Arguments:**

    - `images`: shape `(n, C, H, W)` with `C` 1 or 3; values outside `value_range` are
      clipped.
    - `ncols`: images per row; default `ceil(sqrt(n))` (a square grid).
    - `value_range`: the values shown as black and white (default `(0, 1)`; `(-1, 1)` for
      images scaled to [-1, 1]).
    - `titles`: optional one short string per image (for example a classifier's label).
    - `cmap`: the colour map of 1-channel images.
    - `scale`: inches per cell.

    **Returns:**

    A new `Figure`; the caller closes it.
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] < 1:
        raise ValueError(
            f"`images` must have shape (n, C, H, W) with C 1 or 3 and n >= 1, got {x.shape}."
        )
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"`value_range` must be (low, high) with high > low, got {value_range}.")
    n = x.shape[0]
    ncols = int(np.ceil(np.sqrt(n))) if ncols is None else _positive_int(ncols, "ncols")
    nrows = -(-n // ncols)
    if titles is not None and len(titles) != n:
        raise ValueError(f"`titles` must have one entry per image ({n}), got {len(titles)}.")
    x = np.clip((np.nan_to_num(x, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    tall = 1.25 if titles is not None else 1.0
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(scale * ncols, scale * nrows * tall), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = np.moveaxis(x[i], 0, -1)
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap=cmap, vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=7, pad=2)
    hspace = 0.3 if titles is not None else 0.05
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99, wspace=0.05, hspace=hspace)
    return fig


# --------------------------------------------------------------------------------------------
# Animation and saving
# --------------------------------------------------------------------------------------------


def _atomic_target(path: str | os.PathLike) -> tuple[pathlib.Path, str]:
    """Creates the parent folder and returns `(path, temp)`, `temp` a fresh name beside `path`
    with the same suffix (so writers that go by the suffix pick the right format)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.tmp{path.suffix}")
    return path, str(tmp)


def animate_reverse(
    trajectory: Any,
    path: str | os.PathLike,
    *,
    ts: Any = None,
    fps: int = 10,
    area: AreaLike | None = None,
    reference: Any = None,
    hold: float = 0.0,
) -> pathlib.Path:
    """Writes an animated GIF of the reverse process: one frame per snapshot.

    Written with `matplotlib.animation.PillowWriter` to a temporary file in the same folder,
    then moved into place with `os.replace`, so `path` is never a half-written GIF. The
    figure is closed before returning.

    **Arguments:**

    - `trajectory`: shape `(n, k, 2)`, as `sample(..., saveat=k, return_info=True)
      .trajectory`; the GIF has `k` frames. Paths with NaN or inf are dropped with a warning.
    - `path`: where to write the GIF; parent folders are created.
    - `ts`: optional shape `(k,)`, the time of each snapshot, shown in the frame's title.
    - `fps`: frames per second.
    - `area`: `(lo, hi)` for both axes or `((xlo, xhi), (ylo, yhi))`. Default: a box holding
      the central 99% of the final snapshot and the reference, plus a 10% margin (the data's
      region; a wide prior, as for a VE SDE, starts partly outside the view).
    - `reference`: optional points `(m, 2)` drawn in grey in every frame.
    - `hold`: seconds to hold the last frame (the samples) before the GIF loops.

    **Returns:**

    `path`, as a `pathlib.Path`.
    """
    from matplotlib.animation import FuncAnimation, PillowWriter

    traj, ts = _trajectory(trajectory, ts)
    ref = _points(reference, "reference", allow_none=True)
    fps = _positive_int(fps, "fps")
    box = _auto_area(traj[:, -1], ref) if area is None else _area(area)
    k = traj.shape[1]
    if not (isinstance(hold, (int, float)) and 0 <= hold < 60):
        raise ValueError(f"`hold` must be a number of seconds in [0, 60), got {hold!r}.")
    frames = list(range(k)) + [k - 1] * int(round(hold * fps))

    fig, ax = plt.subplots(figsize=(5, 5))
    try:
        if ref is not None:
            ax.scatter(ref[:, 0], ref[:, 1], **_REFERENCE_STYLE)
        dots = ax.scatter(traj[:, 0, 0], traj[:, 0, 1], s=4, alpha=0.6, linewidths=0, zorder=2)
        _set_limits(ax, box)
        ax.set_aspect("equal")
        title = ax.set_title("")

        def frame(i):
            dots.set_offsets(traj[:, i])
            label = f"t = {ts[i]:.3g}" if ts is not None else ""
            title.set_text(f"snapshot {i + 1}/{k}" + (f", {label}" if label else ""))
            return dots, title

        anim = FuncAnimation(fig, frame, frames=frames, blit=False)
        path, tmp = _atomic_target(path)
        try:
            anim.save(tmp, writer=PillowWriter(fps=fps))
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    finally:
        plt.close(fig)
    return path


def save(fig: Figure, path: str | os.PathLike, *, dpi: int = 150) -> pathlib.Path:
    """Saves `fig` (format from the suffix of `path`, for example `.png`) and closes it.

    Creates the parent folders and writes atomically (a temporary file beside `path`, then
    `os.replace`).

    **Arguments:**

    - `fig`: the `Figure`, as returned by the plotting functions.
    - `path`: where to write it.
    - `dpi`: resolution for raster formats.

    **Returns:**

    `path`, as a `pathlib.Path`.
    """
    if not isinstance(fig, Figure):
        raise ValueError(f"`fig` must be a matplotlib Figure, got {type(fig).__name__}.")
    path, tmp = _atomic_target(path)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    finally:
        plt.close(fig)
    return path
