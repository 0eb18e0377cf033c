"""Equinox score networks, each called as `net(t, x)` on ONE sample (no batch axis), or as
`net(t, x, c)` with that sample's condition `c` when built with `num_classes=` (an integer
label, `num_classes` being the null label) or `condition_size=` (a float vector)."""

from ._embedding import SinusoidalEmbedding as SinusoidalEmbedding
from ._mlp import (
    NoiseConditionalMLP as NoiseConditionalMLP,
    TimeFreeMLP as TimeFreeMLP,
    TimeMLP as TimeMLP,
)
from ._unet import UNet as UNet
