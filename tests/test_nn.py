"""Score networks (`scoresde.nn`) and score parameterisations."""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import scoresde as sd
import scoresde.nn as nn
from scoresde._condition import AbstractClassConditional, check_labels, conditional_parts
from scoresde._score import (
    AbstractParameterisation,
    DirectScore,
    EDMDenoiser,
    NoisePrediction,
)
from scoresde.nn._condition import condition_key, LabelEmbedding


def _randomise_output(net, key):
    """The U-Net's output conv is zero-initialised (so it outputs 0); give it random weights
    so that its output carries information about the input."""
    conv = net.conv_out
    w = 0.1 * jr.normal(key, conv.weight.shape)
    return eqx.tree_at(lambda n: n.conv_out.weight, net, w)


_NETS = {
    "TimeMLP": (lambda k: nn.TimeMLP(2, key=k), (2,)),
    "TimeMLP-fourier": (lambda k: nn.TimeMLP(3, width=32, num_fourier=4, key=k), (3,)),
    "NoiseConditionalMLP": (lambda k: nn.NoiseConditionalMLP(2, key=k), (2,)),
    "TimeFreeMLP": (lambda k: nn.TimeFreeMLP(2, key=k), (2,)),
    "UNet-1x8x8": (lambda k: nn.UNet((1, 8, 8), key=k), (1, 8, 8)),
    "UNet-1x28x28": (lambda k: nn.UNet((1, 28, 28), key=k), (1, 28, 28)),
    "UNet-3x8x8": (lambda k: nn.UNet((3, 8, 8), key=k), (3, 8, 8)),
    # Odd sizes: 7x5 -> 4x3 -> 2x2 and back to the skips' exact shapes. Few channels: every
    # weight shape of a U-Net costs an initialisation kernel to compile when it is built
    # (~0.2 s each on CPU), and these are shared with the conditional U-Nets below.
    "UNet-odd-7x5": (
        lambda k: nn.UNet((3, 7, 5), base_channels=8, num_res_blocks=2, key=k),
        (3, 7, 5),
    ),
}


@functools.cache
def _build_raw(name):
    make, shape = _NETS[name]
    return make(jr.key(0)), shape


@functools.cache  # building a U-Net compiles one init kernel per weight shape: share them
def _build(name):
    net, shape = _build_raw(name)
    if isinstance(net, nn.UNet):
        net = _randomise_output(net, jr.key(1))
    return net, shape


def _abstract(name):
    """The network with its weights as `ShapeDtypeStruct`s: built and run through
    `eval_shape` without compiling anything, so every size is checked cheaply."""
    make, shape = _NETS[name]
    abstract = eqx.filter_eval_shape(make, jr.key(0))
    params, static = eqx.partition(abstract, lambda a: isinstance(a, jax.ShapeDtypeStruct))
    return params, static, shape


def _num_params(name):
    params, _, _ = _abstract(name)
    return sum(math.prod(a.shape) for a in jax.tree.leaves(params))


def _count(make):
    """The parameter count of `make(key)`, built abstractly (nothing is computed)."""
    abstract = eqx.filter_eval_shape(make, jr.key(0))
    leaves = jax.tree.leaves(abstract)
    return sum(math.prod(a.shape) for a in leaves if isinstance(a, jax.ShapeDtypeStruct))


@pytest.mark.parametrize("name", list(_NETS))
def test_shape_and_vmap_shape(name):
    params, static, shape = _abstract(name)
    call = lambda p, t, x: eqx.combine(p, static)(t, x)
    out = jax.eval_shape(call, params, 0.5, jax.ShapeDtypeStruct(shape, jnp.float32))
    assert out.shape == shape and out.dtype == jnp.float32
    ts = jax.ShapeDtypeStruct((3,), jnp.float32)
    xs = jax.ShapeDtypeStruct((3, *shape), jnp.float32)
    assert jax.eval_shape(jax.vmap(call, (None, 0, 0)), params, ts, xs).shape == (3, *shape)


# Compiling the U-Net costs seconds on CPU: run the odd-sized configuration (the code path
# of every size); the others are checked through their shapes above.
@pytest.mark.parametrize(
    "name", ["TimeMLP", "TimeMLP-fourier", "NoiseConditionalMLP", "UNet-odd-7x5"]
)
def test_vmap_matches_single_calls_and_uses_t(name):
    net, shape = _build(name)
    n = 3
    xs = jr.normal(jr.key(2), (n, *shape))
    ts = jnp.array([0.1, 0.5, 0.9])

    @eqx.filter_jit
    def run(net, ts, xs):
        batched = jax.vmap(net)(ts, xs)
        # One call per sample (a loop, not vmap), at the same times and at reversed times.
        singles = jax.lax.map(
            lambda a: net(*a), (jnp.concatenate([ts, ts[::-1]]), jnp.concatenate([xs, xs]))
        )
        return batched, singles[:n], singles[n:]

    batched, singles, swapped = run(net, ts, xs)
    assert batched.shape == (n, *shape)
    assert np.all(np.isfinite(batched))
    # Samples are independent under vmap: the batched call equals one call per sample.
    np.testing.assert_allclose(batched, singles, rtol=1e-4, atol=1e-5)
    # The output depends on x and on t.
    assert not np.allclose(batched[0], batched[1])
    assert not np.allclose(batched[0], swapped[0])


@pytest.mark.parametrize("name", ["TimeMLP", "NoiseConditionalMLP", "TimeFreeMLP", "UNet-odd-7x5"])
def test_wrong_shape_raises(name):
    net, shape = _build(name)
    kind = name.split("-")[0]
    wrong = shape[:-1] + (shape[-1] + 1,)
    with pytest.raises(ValueError, match=rf"{kind} was built for data of shape") as info:
        net(0.5, jnp.zeros(wrong))
    assert str(shape) in str(info.value) and str(wrong) in str(info.value)
    # A batch passed where one sample is expected fails the same way, also under jit.
    with pytest.raises(ValueError, match=r"without a batch axis"):
        eqx.filter_jit(net)(0.5, jnp.zeros((4, *shape)))


@pytest.mark.parametrize("name", ["TimeMLP", "NoiseConditionalMLP", "UNet-odd-7x5"])
def test_non_scalar_time_raises(name):
    net, shape = _build(name)
    with pytest.raises(ValueError, match=r"scalar time"):
        net(jnp.zeros((1,)), jnp.zeros(shape))


@pytest.mark.parametrize(
    "build, error",
    [
        (lambda k: nn.TimeMLP(0, key=k), ValueError),
        (lambda k: nn.TimeMLP(2.0, key=k), ValueError),
        (lambda k: nn.TimeMLP(2, width=0, key=k), ValueError),
        (lambda k: nn.TimeMLP(2, depth=-1, key=k), ValueError),
        (lambda k: nn.TimeMLP(2, num_fourier=-1, key=k), ValueError),
        (lambda k: nn.TimeMLP(2, activation="relu", key=k), TypeError),
        (lambda k: nn.NoiseConditionalMLP(2, embed_size=0, key=k), ValueError),
        (lambda k: nn.NoiseConditionalMLP(True, key=k), ValueError),
        (lambda k: nn.TimeFreeMLP(2, width=-3, key=k), ValueError),
        (lambda k: nn.UNet((28, 28), key=k), ValueError),
        (lambda k: nn.UNet((1, 0, 8), key=k), ValueError),
        (lambda k: nn.UNet((1, 8.0, 8), key=k), ValueError),
        (lambda k: nn.UNet(28, key=k), ValueError),
        (lambda k: nn.UNet((1, 8, 8), channel_mults=(), key=k), ValueError),
        (lambda k: nn.UNet((1, 8, 8), channel_mults=(1, 0), key=k), ValueError),
        (lambda k: nn.UNet((1, 8, 8), num_res_blocks=0, key=k), ValueError),
        (lambda k: nn.UNet((1, 8, 8), time_embed_size=63, key=k), ValueError),
        (lambda k: nn.SinusoidalEmbedding(3), ValueError),
        (lambda k: nn.SinusoidalEmbedding(4, min_freq=0.0), ValueError),
    ],
)
def test_bad_constructor_arguments(build, error):
    with pytest.raises(error, match="`"):
        build(jr.key(0))


def test_unet_data_shape_message_names_the_argument():
    with pytest.raises(ValueError, match=r"`data_shape` must be \(C, H, W\).*\(28, 28\)"):
        nn.UNet((28, 28), key=jr.key(0))


def test_unet_output_conv_is_zero_initialised():
    # So the untrained U-Net outputs 0 (checked on the weights: running it costs a compile).
    net, _ = _build_raw("UNet-odd-7x5")
    np.testing.assert_array_equal(net.conv_out.weight, 0.0)
    np.testing.assert_array_equal(net.conv_out.bias, 0.0)
    assert np.any(net.up_blocks[-1][-1].conv2.weight != 0)


def _unet_channel_first(net, t, x):
    """The U-Net's forward pass written with Equinox's own channel-first layers, as the
    architecture reads: the reference for the channel-last computation inside `UNet`."""
    emb = jax.nn.silu(net.time_mlp(net.time_embed(jnp.asarray(t, float))))

    def block(b, x):
        h = b.conv1(jax.nn.silu(b.norm1(x))) + b.time_proj(emb)[:, None, None]
        h = b.conv2(jax.nn.silu(b.norm2(h)))
        return h + (x if b.skip is None else b.skip(x))

    h, skips = net.conv_in(x), []
    for blocks, down in zip(net.down_blocks, net.downsamples, strict=True):
        for b in blocks:
            h = block(b, h)
        skips.append(h)
        h = down(h)
    h = block(net.mid_block, h)
    for blocks, up, skip in zip(net.up_blocks, net.upsamples, reversed(skips), strict=True):
        h = jax.image.resize(h, (h.shape[0], *skip.shape[1:]), method="nearest")
        h = jnp.concatenate([up.conv(h), skip], axis=0)
        for b in blocks:
            h = block(b, h)
    return net.conv_out(jax.nn.silu(net.norm_out(h)))


def test_unet_channel_last_computation_equals_equinox_channel_first_layers():
    # Odd sizes (7x5 -> 4x3 -> 2x2), 3 channels, 2 blocks per level, random output conv.
    net, shape = _build("UNet-odd-7x5")
    x = jr.normal(jr.key(2), shape)
    for t in (0.05, 0.6):
        got = eqx.filter_jit(net)(t, x)
        want = eqx.filter_jit(_unet_channel_first)(net, t, x)
        assert float(jnp.abs(want).max()) > 0.1  # not a comparison of zeros
        # float32 sums in a different order: a few ulps of the activations' scale
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_time_mlp_uses_the_sgm_from_scratch_tutorial_features():
    net = nn.TimeMLP(2, key=jr.key(0))
    x = jnp.array([0.3, -1.2])
    for t in (0.0, 0.25, 0.7, 1.0):
        expected = jnp.array([t - 0.5, math.cos(2 * math.pi * t)])
        np.testing.assert_allclose(net.time_features(t), expected, rtol=1e-6, atol=1e-6)
        # The whole forward pass is the MLP on concat(x, t - 1/2, cos 2πt).
        np.testing.assert_allclose(
            net(t, x), net.mlp(jnp.concatenate([x, expected])), rtol=1e-5, atol=1e-6
        )
    # t and 1 - t share cos 2πt but not t - 1/2, so the outputs differ.
    assert not np.allclose(net(0.2, x), net(0.8, x))


def test_time_mlp_fourier_features():
    net, _ = _build("TimeMLP-fourier")  # data_size=3, num_fourier=4
    assert net.mlp.in_size == 3 + 2 + 2 * 4
    t = 0.37
    f = np.array([1.0, 2.0, 4.0, 8.0])
    expected = np.concatenate(
        [[t - 0.5, np.cos(2 * np.pi * t)], np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t)]
    )
    np.testing.assert_allclose(net.time_features(t), expected, rtol=1e-5, atol=1e-5)


def test_time_free_mlp_ignores_time():
    net, _ = _build("TimeFreeMLP")
    kasim = nn.TimeFreeMLP(2, activation=jax.nn.log_sigmoid, key=jr.key(0))
    xs = jr.normal(jr.key(1), (5, 2))

    @eqx.filter_jit
    def run(net, kasim, xs):
        at = lambda t: jax.vmap(net, in_axes=(None, 0))(t, xs)
        # Smooth activation: the Jacobian trace (implicit score matching) has a non-zero
        # derivative in x, unlike with ReLU.
        trace = lambda x: jnp.trace(jax.jacfwd(lambda y: net(0.0, y))(x))
        kasim_out = jax.vmap(kasim, in_axes=(None, 0))(0.0, xs)
        return (
            at(0.0),
            [at(0.3), at(1.0), at(7.0)],
            jax.vmap(net.mlp)(xs),
            kasim_out,
            jax.grad(trace)(xs[0]),
        )

    out0, outs, mlp_out, kasim_out, grad_trace = run(net, kasim, xs)
    for out in outs:
        np.testing.assert_array_equal(out, out0)
    np.testing.assert_array_equal(out0, mlp_out)
    # Kasim's tutorial's LogSigmoid network is one argument away, and it is a different
    # function.
    assert not np.allclose(kasim_out, out0)
    assert np.linalg.norm(grad_trace) > 0


def test_sinusoidal_embedding():
    emb = nn.SinusoidalEmbedding(8, min_freq=1.0, max_freq=1000.0)
    w = np.geomspace(1.0, 1000.0, 4)
    t = 0.123
    np.testing.assert_allclose(
        emb(t), np.concatenate([np.sin(w * t), np.cos(w * t)]), rtol=1e-5, atol=2e-5
    )
    # Not trainable: no array leaves.
    assert not jax.tree.leaves(eqx.filter(emb, eqx.is_array))


def test_parameter_counts_documented():
    assert _num_params("UNet-1x28x28") == 455_777
    assert _num_params("UNet-1x8x8") == 455_777  # independent of H, W
    assert _num_params("UNet-3x8x8") == 456_931
    assert _num_params("TimeMLP") == 133_378
    assert _num_params("NoiseConditionalMLP") == 2_994
    assert _num_params("TimeFreeMLP") == 8_642


# -- conditional networks ----------------------------------------------------------------

_COND_NETS = {
    "TimeMLP": (lambda k: nn.TimeMLP(2, num_classes=4, key=k), (2,)),
    "NoiseConditionalMLP": (lambda k: nn.NoiseConditionalMLP(2, num_classes=4, key=k), (2,)),
    "UNet": (lambda k: nn.UNet((1, 8, 8), base_channels=8, num_classes=4, key=k), (1, 8, 8)),
    "TimeMLP-vector": (lambda k: nn.TimeMLP(2, condition_size=3, width=32, key=k), (2,)),
    "UNet-vector": (
        lambda k: nn.UNet((1, 8, 8), base_channels=8, condition_size=3, key=k),
        (1, 8, 8),
    ),
}


@functools.cache
def _build_cond_raw(name):
    make, shape = _COND_NETS[name]
    return make(jr.key(0)), shape


@functools.cache
def _build_cond(name):
    """The network, its sample shape, and five conditions: every label 0..4 (4 is the null
    label) or five random condition vectors."""
    net, shape = _build_cond_raw(name)
    if isinstance(net, nn.UNet):
        net = _randomise_output(net, jr.key(1))
    if isinstance(net.condition_embed, LabelEmbedding):
        conditions = jnp.arange(net.condition_embed.num_classes + 1)
    else:
        conditions = jr.normal(jr.key(3), (5, net.condition_embed.condition_size))
    return net, shape, conditions


def _absorb(net, c0):
    """`net` with its condition embedding zeroed and the embedding of `c0` moved into the
    bias of the layer it feeds (the first layer of an MLP, whose last inputs it is; the
    U-Net's time MLP output, to which it is added before the SiLU). If the condition enters
    the network there and only there, the result is `net(t, x, c0)` for EVERY condition."""
    e0 = net.condition_embed(c0)
    zero = jax.tree.map(lambda a: jnp.zeros_like(a) if eqx.is_array(a) else a, net.condition_embed)
    net = eqx.tree_at(lambda n: n.condition_embed, net, zero)
    if isinstance(net, nn.UNet):
        bias_of = lambda n: n.time_mlp.layers[-1].bias
        shift = e0
    else:
        layer = lambda n: (n.mlp if isinstance(n, nn.TimeMLP) else n.backbone).layers[0]
        bias_of = lambda n: layer(n).bias
        shift = layer(net).weight[:, -e0.size :] @ e0
    return eqx.tree_at(bias_of, net, bias_of(net) + shift)


@pytest.mark.parametrize("name", list(_COND_NETS))
def test_conditional_network(name):
    net, shape, cs = _build_cond(name)
    n = len(cs)
    xs = jr.normal(jr.key(2), (n, *shape))

    @eqx.filter_jit
    def run(net, xs, cs):
        by_condition = jax.vmap(lambda c: net(0.5, xs[0], c))(cs)  # one x, every condition
        batched = jax.vmap(lambda x, c: net(0.5, x, c))(xs, cs)
        singles = jax.lax.map(lambda a: net(0.5, *a), (xs, cs))  # one call per sample
        return by_condition, batched, singles

    by_condition, batched, singles = run(net, xs, cs)
    assert by_condition.shape == batched.shape == (n, *shape)
    assert np.all(np.isfinite(by_condition)) and np.all(np.isfinite(batched))
    np.testing.assert_allclose(batched, singles, rtol=1e-4, atol=1e-5)
    # Every condition gives its own output (for labels: every class and the null label).
    for i in range(n):
        for j in range(i):
            assert not np.allclose(by_condition[i], by_condition[j], rtol=1e-3, atol=1e-5)
    # The condition enters where the docs say, and only there: with its embedding moved into
    # a bias the network ignores its condition, all outputs coincide (so the check above
    # fails for a network that ignores the condition) and equal the output at cs[2].
    absorbed, _, _ = run(_absorb(net, cs[2]), xs, cs)
    want = jnp.broadcast_to(by_condition[2], absorbed.shape)
    np.testing.assert_allclose(absorbed, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["TimeMLP", "NoiseConditionalMLP", "TimeMLP-vector"])
def test_conditional_mlp_input_is_the_concatenation(name):
    net, _, cs = _build_cond(name)
    x, t = jnp.array([0.3, -1.2]), 0.3
    size = net.condition_embed.size
    assert size == 16  # condition_embed_size's default
    for c in (cs[0], cs[-1]) if name.endswith("vector") else (0, 3, 4, np.int32(4)):
        e = net.condition_embed(c)
        if isinstance(net, nn.TimeMLP):
            assert net.mlp.in_size == 2 + 2 + size
            want = net.mlp(jnp.concatenate([x, net.time_features(t), e]))
        else:
            assert net.backbone.layers[0].in_features == 2 + 16 + size
            want = net.backbone(jnp.concatenate([x, net.embedding(jnp.array([t])), e]))
        np.testing.assert_allclose(net(t, x, c), want, rtol=1e-5, atol=1e-6)


def test_label_embedding_is_class_conditional():
    net, _, _ = _build_cond("UNet")
    emb = net.condition_embed
    assert isinstance(emb, AbstractClassConditional) and emb.num_classes == 4
    assert emb.embedding.weight.shape == (5, 64)  # 4 classes + the null label, time_embed_size
    # The entry functions find it inside the network and check labels against it.
    assert conditional_parts(net, AbstractClassConditional) == [emb]
    check_labels(net, jnp.array([0, 4]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\]"):
        check_labels(net, jnp.array([0, 5]))
    # A vector condition is not a class label.
    vector, _, _ = _build_cond("UNet-vector")
    assert conditional_parts(vector, AbstractClassConditional) == []
    assert not isinstance(vector.condition_embed, AbstractClassConditional)


_USAGE = r"was built with num_classes=4: call it as net\(t, x, c\) with an integer label c in "
_USAGE += r"\[0, 4\] \(4 is the null label\)"


@pytest.mark.parametrize("name", ["TimeMLP", "NoiseConditionalMLP", "UNet"])
def test_conditional_call_errors(name):
    # Every check is static: it raises at trace time, before any computation.
    net, shape = _build_cond_raw(name)
    x = jnp.zeros(shape)
    with pytest.raises(ValueError, match=rf"^{name} {_USAGE}\.$"):
        net(0.5, x)
    with pytest.raises(TypeError, match=r"`condition` has dtype float32"):
        net(0.5, x, jnp.asarray(1.0))
    with pytest.raises(TypeError, match=r"`condition` has dtype float"):
        net(0.5, x, 1.0)
    with pytest.raises(TypeError, match=r"`condition` is a bool"):
        net(0.5, x, True)
    with pytest.raises(TypeError, match=r"`condition` of type str"):
        net(0.5, x, "cat")
    with pytest.raises(ValueError, match=rf"{_USAGE}; `condition` has shape \(3,\).*jax.vmap"):
        net(0.5, x, jnp.arange(3))
    with pytest.raises(ValueError, match=r"`condition` has shape \(3,\)"):  # traced, in jit
        eqx.filter_jit(net)(0.5, x, jnp.arange(3))
    for bad in (5, -1, np.int64(5), jnp.asarray(5)):
        with pytest.raises(ValueError, match=rf"`condition` is {int(bad)}, outside \[0, 4\]"):
            net(0.5, x, bad)
    with pytest.raises(ValueError, match=r"outside \[0, 4\]"):  # a Python int stays concrete
        eqx.filter_jit(net)(0.5, x, 5)
    # An unconditional network given a condition.
    plain, plain_shape = _build_raw({"UNet": "UNet-odd-7x5"}.get(name, name))
    with pytest.raises(
        ValueError,
        match=rf"^{name} was built without num_classes or condition_size: it takes no "
        r"condition; rebuild it with num_classes=\.\.\.",
    ):
        plain(0.5, jnp.zeros(plain_shape), 1)


@pytest.mark.parametrize("name", ["TimeMLP-vector", "UNet-vector"])
def test_vector_condition_call_errors(name):
    net, shape = _build_cond_raw(name)
    kind = name.split("-")[0]
    x = jnp.zeros(shape)
    usage = rf"^{kind} was built with condition_size=3: call it as net\(t, x, c\) with a float "
    usage += r"vector c of shape \(3,\)"
    with pytest.raises(ValueError, match=usage + r"\.$"):
        net(0.5, x)
    with pytest.raises(ValueError, match=usage + r"; `condition` has shape \(4,\)"):
        net(0.5, x, jnp.zeros(4))
    with pytest.raises(ValueError, match=r"`condition` has shape \(2, 3\).*jax.vmap"):
        eqx.filter_jit(net)(0.5, x, jnp.zeros((2, 3)))
    with pytest.raises(TypeError, match=usage + r"; `condition` has dtype int32"):
        net(0.5, x, jnp.zeros(3, dtype=jnp.int32))
    with pytest.raises(TypeError, match=r"`condition` of type object"):
        net(0.5, x, object())


_BAD_CONDITION_ARGUMENTS = [
    (dict(num_classes=0), "num_classes"),
    (dict(num_classes=2.5), "num_classes"),
    (dict(num_classes=True), "num_classes"),
    (dict(condition_size=0), "condition_size"),
    (dict(condition_size=(3,)), "condition_size"),
    (dict(num_classes=3, condition_size=2), "num_classes.*condition_size"),
]


@pytest.mark.parametrize(
    "kind, kwargs, name",
    [
        (kind, *case)
        for kind in ("TimeMLP", "NoiseConditionalMLP", "UNet")
        for case in (
            *_BAD_CONDITION_ARGUMENTS,
            # (the U-Net's condition embedding has size time_embed_size)
            *([] if kind == "UNet" else [(dict(condition_embed_size=0), "condition_embed_size")]),
        )
    ],
)
def test_bad_condition_arguments(kind, kwargs, name):
    data = (1, 8, 8) if kind == "UNet" else 2
    with pytest.raises(ValueError, match=f"`{name}`"):
        getattr(nn, kind)(data, key=jr.key(0), **kwargs)


def _arrays(tree):
    return jax.tree.leaves(eqx.filter(tree, eqx.is_array))


def _assert_same_arrays(a, b):
    la, lb = _arrays(a), _arrays(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb, strict=True):
        np.testing.assert_array_equal(u, v)


def test_unconditional_networks_are_unchanged():
    # The unconditional networks are what they were before conditioning: recomputed here
    # from Equinox's layers and the same splits of the key.
    key = jr.key(0)
    mlp, _ = _build_raw("TimeMLP")
    assert mlp.condition_embed is None
    _assert_same_arrays(mlp.mlp, eqx.nn.MLP(4, 2, 256, 3, activation=jax.nn.relu, key=key))
    ncmlp, _ = _build_raw("NoiseConditionalMLP")
    assert ncmlp.condition_embed is None
    k_embed, k_backbone = jr.split(key)
    _assert_same_arrays(
        (ncmlp.embedding, ncmlp.backbone),
        (
            eqx.nn.MLP(1, 16, 16, 1, activation=jax.nn.relu, key=k_embed),
            eqx.nn.MLP(18, 2, 128, 1, activation=jax.nn.relu, key=k_backbone),
        ),
    )
    # A conditional network takes its embedding's key apart: the layers that the embedding
    # does not feed are those of the unconditional network of the same key.
    cond_mlp, _ = _build_cond_raw("TimeMLP")
    _assert_same_arrays(cond_mlp.mlp.layers[1:], mlp.mlp.layers[1:])
    cond_unet, _ = _build_cond_raw("UNet")
    plain_unet = nn.UNet((1, 8, 8), base_channels=8, key=key)
    assert plain_unet.condition_embed is None
    _assert_same_arrays(eqx.tree_at(lambda n: n.condition_embed, cond_unet, None), plain_unet)
    # ... and the embedding's key is none of `jr.split(key, n)` (`jr.fold_in(key, i)` is
    # `jr.split(key, n)[i]` for i < n with JAX's partitionable Threefry).
    data = jr.key_data(condition_key(key))
    assert not any(np.array_equal(data, jr.key_data(k)) for k in jr.split(key, 256))


def test_conditional_parameter_counts_documented():
    # The counts quoted in the docstrings for num_classes=10 (unconditional ones above).
    assert _count(lambda k: nn.TimeMLP(2, num_classes=10, key=k)) == 137_650
    assert _count(lambda k: nn.NoiseConditionalMLP(2, num_classes=10, key=k)) == 5_218
    assert _count(lambda k: nn.UNet((1, 28, 28), num_classes=10, key=k)) == 455_777 + 704


# -- parameterisations -------------------------------------------------------------------


def _gaussian(sde, c):
    """For data N(0, c² I): the exact score and the ideal outputs of each network kind."""
    m, s = sde.mean_coeff, sde.std

    def score(t, x):
        return -x / (m(t) ** 2 * c**2 + s(t) ** 2)

    def eps(t, x):  # E[ε | x_t = x]
        return s(t) * x / (m(t) ** 2 * c**2 + s(t) ** 2)

    def denoised(t, x):  # E[x_0 | x_t = x]
        return m(t) * c**2 * x / (m(t) ** 2 * c**2 + s(t) ** 2)

    return score, eps, denoised


def _ideal_edm_net(c, sigma_data):
    """The F that makes Karras et al.'s D the exact denoiser of N(0, c² I) in the VE frame,
    written from the paper's formulas and seeing only what the wrapper passes it."""

    def net(c_noise, y):
        sigma = jnp.exp(4.0 * c_noise)
        var = sigma**2 + sigma_data**2
        x_hat = y * jnp.sqrt(var)
        d = c**2 / (c**2 + sigma**2) * x_hat  # E[x_0 | x_0 + σ ε = x_hat]
        c_skip = sigma_data**2 / var
        c_out = sigma * sigma_data / jnp.sqrt(var)
        return (d - c_skip * x_hat) / c_out

    return net


_SDES = {
    "VP": lambda: sd.VPSDE(),
    "VE": lambda: sd.VESDE(),
    "subVP": lambda: sd.SubVPSDE(),
}


@pytest.mark.parametrize("sde_name", list(_SDES))
@pytest.mark.parametrize("shape", [(3,), (1, 4, 4)])
def test_parameterisations_recover_exact_gaussian_score(sde_name, shape):
    c, sigma_data = 1.3, 0.5
    with jax.enable_x64(True):
        sde = _SDES[sde_name]()
        score, eps, denoised = _gaussian(sde, c)
        wrappers = {
            "direct": DirectScore(score),
            "noise": NoisePrediction(eps, sde),
            "edm": EDMDenoiser(_ideal_edm_net(c, sigma_data), sde, sigma_data=sigma_data),
        }
        xs = jr.normal(jr.key(0), (4, *shape), dtype=jnp.float64) * 2.0
        ts = jnp.array([1e-4, 1e-2, 0.1, 0.5, 1.0])
        fns = {"exact": score, **wrappers, "edm.denoise": wrappers["edm"].denoise}
        fns["denoised"] = denoised
        # Every function at every (t, x), in one compiled call.
        grid = jax.vmap(jax.vmap(lambda f, t, x: f(t, x), (None, None, 0)), (None, 0, None))
        out = eqx.filter_jit(lambda fns: {k: grid(f, ts, xs) for k, f in fns.items()})(fns)
        for name in wrappers:
            assert isinstance(wrappers[name], AbstractParameterisation)
            assert out[name].shape == (len(ts), *xs.shape), name
            np.testing.assert_allclose(out[name], out["exact"], rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(out["edm.denoise"], out["denoised"], rtol=1e-5)


def test_edm_preconditioning_values():
    edm = EDMDenoiser(lambda t, x: x, sd.VESDE(), sigma_data=0.5)
    c_skip, c_out, c_in, c_noise = edm.preconditioning(2.0)
    np.testing.assert_allclose(
        [c_skip, c_out, c_in, c_noise],
        [0.25 / 4.25, 1.0 / math.sqrt(4.25), 1 / math.sqrt(4.25), 0.25 * math.log(2.0)],
        rtol=1e-6,
    )
    # Karras et al.'s design rule, for data of variance σ_d² and σ = 2: the network's input
    # c_in (x_0 + σ ε) and its target (x_0 - c_skip (x_0 + σ ε)) / c_out have unit variance.
    sigma, sd2 = 2.0, 0.25
    np.testing.assert_allclose(c_in**2 * (sd2 + sigma**2), 1.0, rtol=1e-6)
    target_var = ((1 - c_skip) ** 2 * sd2 + c_skip**2 * sigma**2) / c_out**2
    np.testing.assert_allclose(target_var, 1.0, rtol=1e-6)


def test_parameterisations_keep_float32():
    sde = sd.VPSDE()
    net = nn.TimeMLP(2, width=16, depth=1, key=jr.key(0))
    x = jnp.ones(2, dtype=jnp.float32)
    for wrapped in (DirectScore(net), NoisePrediction(net, sde), EDMDenoiser(net, sde)):
        out = eqx.filter_eval_shape(wrapped, 0.5, x)
        assert out.shape == (2,) and out.dtype == jnp.float32


class _CubicSDE(sd.AbstractSDE):
    """A non-linear SDE dx = -x³ dt + dw, with no Gaussian kernel."""

    T: jax.Array = eqx.field(default_factory=lambda: jnp.asarray(1.0))

    def drift(self, t, x):
        return -(x**3)

    def diffusion(self, t):
        return jnp.asarray(1.0)

    def prior_sample(self, key, data_shape):
        return jr.normal(key, data_shape)

    def prior_log_prob(self, x):
        return -0.5 * jnp.sum(x**2)

    @property
    def default_eps(self):
        return 1e-3


def test_parameterisation_argument_errors():
    with pytest.raises(TypeError, match="non-linear _CubicSDE"):
        NoisePrediction(lambda t, x: x, _CubicSDE())
    with pytest.raises(TypeError, match="AbstractLinearSDE"):
        EDMDenoiser(lambda t, x: x, _CubicSDE())
    with pytest.raises(TypeError, match="`sde`"):
        NoisePrediction(lambda t, x: x, "vp")
    with pytest.raises(TypeError, match="`net`"):
        DirectScore(3.0)
    for bad in (0.0, -1.0, float("nan"), "0.5"):
        with pytest.raises(ValueError, match="`sigma_data`"):
            EDMDenoiser(lambda t, x: x, sd.VPSDE(), sigma_data=bad)
