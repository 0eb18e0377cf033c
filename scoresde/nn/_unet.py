"""A small time-conditional U-Net for channel-first images, computed channel-last."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.random as jr

from .._checks import check_key
from .._custom_types import Array, ArrayLike, Float, PRNGKeyArray, ScalarLike
from ._condition import (
    AbstractConditionEmbedding,
    condition_embedding,
    condition_key,
    embed_condition,
)
from ._embedding import SinusoidalEmbedding
from ._misc import check_data, check_int, check_time


def _groups(channels: int) -> int:
    """The largest number of GroupNorm groups <= 8 that divides `channels`."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


# The layers are Equinox's (their parameters, their initialisation), but the feature maps
# are channel-last `(H, W, C)` inside the network and each convolution's kernel is
# transposed to `(H, W, in, out)` where it is used. XLA:CPU computes a convolution fast
# only in that layout (NHWC input, HWIO kernel); outside a loop it rearranges the operands
# itself, but inside a loop body (every sampler's scan or while loop, `fit`'s steps) it does
# not and falls back to a generic convolution 5-20x slower (jax-ml/jax#12868). 16 images x
# 10 steps on 2 cores, U-Net in a `lax.scan`: 8.2 s channel-first, 3.4 s channel-last with
# the OIHW kernel, 0.54 s as below, as fast as the loop unrolled (0.58 s,
# `benchmarks/conv_loops.py`). The gradient's convolutions are in other layouts whatever the
# forward one is, hence `fit`'s default of one step per dispatch for such models on CPU.
# Equinox's Conv2d and GroupNorm only take channel-first input, so these two apply their
# parameters to channel-last maps.


def _conv(conv: eqx.nn.Conv2d, h: Array) -> Array:
    """`conv(h)` for a channel-last `h` of shape `(H, W, C)`, with the layer's own weights."""
    out = lax.conv_general_dilated(
        h[None],
        jnp.transpose(conv.weight, (2, 3, 1, 0)),  # OIHW -> HWIO, see above
        window_strides=conv.stride,
        padding=conv.padding,
        rhs_dilation=conv.dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )[0]
    return out + conv.bias.reshape(-1)


def _group_norm(norm: eqx.nn.GroupNorm, h: Array) -> Array:
    """`norm(h)` for a channel-last `h`: statistics over each group's channels and all
    positions, then the per-channel affine map."""
    height, width, channels = h.shape
    y = h.reshape(height, width, norm.groups, channels // norm.groups)
    mean = jnp.mean(y, axis=(0, 1, 3), keepdims=True)
    var = jnp.maximum(jnp.var(y, axis=(0, 1, 3), keepdims=True), 0.0)
    out = ((y - mean) * lax.rsqrt(var + norm.eps)).reshape(h.shape)
    return out * norm.weight + norm.bias


class _ResBlock(eqx.Module):
    """GroupNorm–SiLU–Conv, + Linear(time embedding), GroupNorm–SiLU–Conv, + skip."""

    norm1: eqx.nn.GroupNorm
    conv1: eqx.nn.Conv2d
    time_proj: eqx.nn.Linear
    norm2: eqx.nn.GroupNorm
    conv2: eqx.nn.Conv2d
    skip: eqx.nn.Conv2d | None

    def __init__(self, in_channels: int, out_channels: int, embed_size: int, *, key):
        k1, k2, k3, k4 = jr.split(key, 4)
        self.norm1 = eqx.nn.GroupNorm(_groups(in_channels), in_channels)
        self.conv1 = eqx.nn.Conv2d(in_channels, out_channels, 3, padding=1, key=k1)
        self.time_proj = eqx.nn.Linear(embed_size, out_channels, key=k2)
        self.norm2 = eqx.nn.GroupNorm(_groups(out_channels), out_channels)
        self.conv2 = eqx.nn.Conv2d(out_channels, out_channels, 3, padding=1, key=k3)
        if in_channels == out_channels:
            self.skip = None
        else:
            self.skip = eqx.nn.Conv2d(in_channels, out_channels, 1, key=k4)

    def __call__(self, x: Array, emb: Array) -> Array:
        h = _conv(self.conv1, jax.nn.silu(_group_norm(self.norm1, x)))
        h = h + self.time_proj(emb)
        h = _conv(self.conv2, jax.nn.silu(_group_norm(self.norm2, h)))
        return h + (x if self.skip is None else _conv(self.skip, x))


class _Upsample(eqx.Module):
    """Nearest-neighbour resize to the skip connection's exact size, then a 3x3 conv."""

    conv: eqx.nn.Conv2d

    def __init__(self, channels: int, *, key):
        self.conv = eqx.nn.Conv2d(channels, channels, 3, padding=1, key=key)

    def __call__(self, x: Array, size: tuple[int, int]) -> Array:
        x = jax.image.resize(x, (*size, x.shape[-1]), method="nearest")
        return _conv(self.conv, x)


class UNet(eqx.Module):
    r"""A small time-conditional U-Net for channel-first images `(C, H, W)`, optionally
    conditioned on a class label or a vector.

    The architecture (DDPM-style, Ho et al. 2020, scaled down):

    - $t \mapsto$ [`SinusoidalEmbedding`][scoresde.nn.SinusoidalEmbedding]`(time_embed_size)`
      $\to$ Linear–SiLU–Linear; the result, through SiLU and a per-block Linear, is added
      to every residual block's feature maps, one bias per channel.
    - With `num_classes` or `condition_size`, a learned embedding $e(c)$ of the condition,
      of size `time_embed_size`, is added to the time MLP's output before that SiLU, as in
      Dhariwal & Nichol's ADM: the blocks see
      $\operatorname{SiLU}(\operatorname{MLP}(\text{emb}(t)) + e(c))$.
    - A 3x3 input conv to `base_channels`.
    - Down path: for each entry $k$ of `channel_mults`, `num_res_blocks` residual blocks
      with `base_channels * k` channels (GroupNorm–SiLU–Conv3x3, time, GroupNorm–SiLU–Conv3x3,
      plus a 1x1-conv or identity skip), a skip connection saved, then a 3x3 conv with
      stride 2 and padding 1, which maps a side $n$ to $\lceil n/2 \rceil$. Every level is
      downsampled, so `channel_mults=(1, 2)` takes 28x28 through 14x14 to 7x7 and 8x8
      through 4x4 to 2x2.
    - One residual block at the lowest resolution.
    - Up path, mirroring the down path: nearest-neighbour resize to the saved skip's exact
      height and width (so odd sizes such as 7 -> 4 -> 7 work) and a 3x3 conv, concatenation
      with the skip, then `num_res_blocks` residual blocks.
    - GroupNorm–SiLU and a 3x3 output conv to `C` channels. The output conv is
      zero-initialised, so the untrained network outputs 0: a zero score for
      [`DirectScore`][scoresde.DirectScore], a zero noise estimate for
      [`NoisePrediction`][scoresde.NoisePrediction], the skip term
      $c_\text{skip}\,\hat x$ for [`EDMDenoiser`][scoresde.EDMDenoiser].

    GroupNorm uses the largest number of groups $\le 8$ that divides the channel count.

    With the defaults (`base_channels=32, channel_mults=(1, 2), num_res_blocks=1,
    time_embed_size=64`) it has 455,777 parameters for 1-channel images and 456,931 for
    3 channels (the count does not depend on `H, W`); `num_classes=10` adds one 64-vector
    per label and the null label, 704 parameters. Jitted on 2 CPU cores, one 28x28 image
    takes about 4 ms (a vmapped batch of 64 about 0.3 s), one 8x8 image under 1 ms.

    **Arguments:**

    - `data_shape`: `(C, H, W)`, the shape of one image.
    - `base_channels`: channels of the first level.
    - `channel_mults`: one multiplier of `base_channels` per resolution level.
    - `num_res_blocks`: residual blocks per level on each path.
    - `time_embed_size`: size of the (even) sinusoidal time embedding and of its MLP (and
      of the condition's embedding).
    - `num_classes`: `None` (the default) for no labels, or the number of classes $K$:
      the network is then called as `net(t, x, c)` with ONE integer label `c` in
      $[0, K]$, where $K$ is the null label (no class) of classifier-free guidance. Each
      label has a learned embedding vector.
    - `condition_size`: `None` (the default), or the length $m$ of a float condition
      vector `c` of shape `(m,)`, embedded by a learned linear map. At most one of
      `num_classes` and `condition_size`.
    - `key`: a `jax.random` key for the initialisation (the condition embedding's key is
      derived apart: the rest does not depend on the condition arguments).

    Called as `net(t, x)` with a scalar `t` and ONE image `x` of shape `data_shape`, or
    `net(t, x, c)` with ONE condition `c` when built with `num_classes` or
    `condition_size`.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{dhariwal2021diffusion,
            title={Diffusion Models Beat {GAN}s on Image Synthesis},
            author={Prafulla Dhariwal and Alexander Nichol},
            booktitle={Advances in Neural Information Processing Systems},
            year={2021}
        }
        ```
    """

    time_embed: SinusoidalEmbedding
    time_mlp: eqx.nn.MLP
    condition_embed: AbstractConditionEmbedding | None
    conv_in: eqx.nn.Conv2d
    down_blocks: list[list[_ResBlock]]
    downsamples: list[eqx.nn.Conv2d]
    mid_block: _ResBlock
    upsamples: list[_Upsample]
    up_blocks: list[list[_ResBlock]]
    norm_out: eqx.nn.GroupNorm
    conv_out: eqx.nn.Conv2d
    data_shape: tuple[int, int, int] = eqx.field(static=True)

    def __init__(
        self,
        data_shape: Sequence[int],
        *,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        num_res_blocks: int = 1,
        time_embed_size: int = 64,
        num_classes: int | None = None,
        condition_size: int | None = None,
        key: PRNGKeyArray,
    ):
        check_key(key)
        shape = tuple(data_shape) if isinstance(data_shape, Sequence) else None
        if (
            shape is None
            or len(shape) != 3
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape)
        ):
            raise ValueError(
                "`data_shape` must be (C, H, W), three positive ints for one channel-first "
                f"image (no batch axis), got {data_shape!r}."
            )
        check_int("base_channels", base_channels)
        check_int("num_res_blocks", num_res_blocks)
        mults = tuple(channel_mults) if isinstance(channel_mults, Sequence) else ()
        if len(mults) == 0 or any(
            isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in mults
        ):
            raise ValueError(
                "`channel_mults` must be a non-empty sequence of positive ints, one per "
                f"resolution level, got {channel_mults!r}."
            )
        check_int("time_embed_size", time_embed_size, minimum=2)
        if time_embed_size % 2:
            raise ValueError(f"`time_embed_size` must be even, got {time_embed_size}.")
        self.condition_embed = condition_embedding(
            num_classes, condition_size, time_embed_size, key=condition_key(key)
        )
        self.data_shape = shape
        in_channels = shape[0]
        channels = [base_channels * m for m in mults]
        keys = iter(jr.split(key, 4 + 3 * len(mults) * (num_res_blocks + 1)))

        self.time_embed = SinusoidalEmbedding(time_embed_size)
        self.time_mlp = eqx.nn.MLP(
            time_embed_size,
            time_embed_size,
            time_embed_size,
            1,
            activation=jax.nn.silu,
            key=next(keys),
        )
        self.conv_in = eqx.nn.Conv2d(in_channels, base_channels, 3, padding=1, key=next(keys))

        down_blocks, downsamples = [], []
        prev = base_channels
        for ch in channels:
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(_ResBlock(prev, ch, time_embed_size, key=next(keys)))
                prev = ch
            down_blocks.append(blocks)
            downsamples.append(eqx.nn.Conv2d(ch, ch, 3, stride=2, padding=1, key=next(keys)))
        self.down_blocks, self.downsamples = down_blocks, downsamples
        self.mid_block = _ResBlock(prev, prev, time_embed_size, key=next(keys))

        upsamples, up_blocks = [], []
        for ch in reversed(channels):
            upsamples.append(_Upsample(prev, key=next(keys)))
            blocks = [_ResBlock(prev + ch, ch, time_embed_size, key=next(keys))]
            for _ in range(num_res_blocks - 1):
                blocks.append(_ResBlock(ch, ch, time_embed_size, key=next(keys)))
            up_blocks.append(blocks)
            prev = ch
        self.upsamples, self.up_blocks = upsamples, up_blocks

        self.norm_out = eqx.nn.GroupNorm(_groups(prev), prev)
        conv_out = eqx.nn.Conv2d(prev, in_channels, 3, padding=1, key=next(keys))
        self.conv_out = eqx.tree_at(
            lambda c: (c.weight, c.bias),
            conv_out,
            (jnp.zeros_like(conv_out.weight), jnp.zeros_like(conv_out.bias)),
        )

    def __call__(
        self, t: ScalarLike, x: Float[Array, "C H W"], condition: ArrayLike | None = None
    ) -> Float[Array, "C H W"]:
        check_data("UNet", self.data_shape, x)
        t = check_time("UNet", t)
        cond = embed_condition("UNet", self.condition_embed, condition)
        emb = self.time_mlp(self.time_embed(t).astype(x.dtype))
        if cond is not None:
            emb = emb + cond.astype(emb.dtype)
        emb = jax.nn.silu(emb)

        h = _conv(self.conv_in, jnp.transpose(x, (1, 2, 0)))
        skips = []
        for blocks, down in zip(self.down_blocks, self.downsamples, strict=True):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            h = _conv(down, h)
        h = self.mid_block(h, emb)
        for blocks, up, skip in zip(self.up_blocks, self.upsamples, reversed(skips), strict=True):
            h = jnp.concatenate([up(h, skip.shape[:2]), skip], axis=-1)
            for block in blocks:
                h = block(h, emb)
        out = _conv(self.conv_out, jax.nn.silu(_group_norm(self.norm_out, h)))
        return jnp.transpose(out, (2, 0, 1))
