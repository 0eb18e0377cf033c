"""Equinox score networks, each called as `net(t, x)` on ONE sample (no batch axis)."""

from ._embedding import SinusoidalEmbedding as SinusoidalEmbedding
from ._mlp import (
    NoiseConditionalMLP as NoiseConditionalMLP,
    TimeFreeMLP as TimeFreeMLP,
    TimeMLP as TimeMLP,
)
from ._unet import UNet as UNet
