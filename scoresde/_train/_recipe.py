"""A model's recipe: the classes and constructor arguments that rebuild it, as JSON.

Equinox's way to save a model is its array leaves (`eqx.tree_serialise_leaves`) plus the
hyperparameters that build a model of the same structure to load them into ("Serialisation"
in Equinox's documentation). The library describes its own networks, parameterisations and
SDEs by reading their fields; another class is described by the `hyperparameters` its user
passes. A recipe is a nested dict:

    {"class": "scoresde.NoisePrediction",
     "args": {"net": {"class": "scoresde.nn.UNet", "args": {...}},
              "sde": {"class": "scoresde.VPSDE", "args": {"beta_min": 0.1, ...}}}}

with activations written `{"function": "jax.nn.relu"}`.
"""

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .. import nn
from .._score import DirectScore, EDMDenoiser, NoisePrediction
from .._sde import SubVPSDE, VESDE, VPSDE
from ..nn._condition import LabelEmbedding, VectorEmbedding


def _function_name(fn: Callable) -> str | None:
    """`jax.nn.<name>` or `jax.numpy.<name>` for a function found there, else None."""
    for prefix, namespace in (("jax.nn", jax.nn), ("jax.numpy", jnp)):
        for name in dir(namespace):
            if not name.startswith("_") and getattr(namespace, name, None) is fn:
                return f"{prefix}.{name}"
    return None


def _function(name: str) -> Callable:
    prefix, _, attr = name.rpartition(".")
    namespace = {"jax.nn": jax.nn, "jax.numpy": jnp}.get(prefix)
    fn = getattr(namespace, attr, None) if namespace is not None else None
    if fn is None or not callable(fn):
        raise ValueError(f"unknown activation {name!r} (scoresde reads jax.nn.* and jax.numpy.*)")
    return fn


def _activation(fn: Callable, where: str) -> dict:
    name = _function_name(fn)
    if name is None:
        raise TypeError(
            f"{where}: the activation {fn!r} is not a function of jax.nn or jax.numpy, so the "
            "file could not name it; use one of those (e.g. jax.nn.silu), or save with "
            "save_checkpoint and load into a model built the same way."
        )
    return {"function": name}


def _condition_args(embedding) -> dict:
    if embedding is None:
        return {}
    if isinstance(embedding, LabelEmbedding):
        return {"num_classes": embedding.num_classes}
    if isinstance(embedding, VectorEmbedding):
        return {"condition_size": embedding.condition_size}
    raise TypeError(f"unknown condition embedding {type(embedding).__name__}")


def _time_mlp(net: nn.TimeMLP) -> dict:
    args = {
        "data_size": net.data_size,
        "width": net.mlp.width_size,
        "depth": net.mlp.depth,
        "activation": _activation(net.mlp.activation, "TimeMLP"),
        "num_fourier": 0 if net.fourier is None else net.fourier.size // 2,
        **_condition_args(net.condition_embed),
    }
    if net.condition_embed is not None:
        args["condition_embed_size"] = net.condition_embed.size
    return args


def _noise_conditional_mlp(net: nn.NoiseConditionalMLP) -> dict:
    args = {
        "data_size": net.data_size,
        "embed_size": net.embedding.out_size,
        "width": net.backbone.width_size,
        "depth": net.backbone.depth,
        **_condition_args(net.condition_embed),
    }
    if net.condition_embed is not None:
        args["condition_embed_size"] = net.condition_embed.size
    return args


def _time_free_mlp(net: nn.TimeFreeMLP) -> dict:
    return {
        "data_size": net.data_size,
        "width": net.mlp.width_size,
        "depth": net.mlp.depth,
        "activation": _activation(net.mlp.activation, "TimeFreeMLP"),
    }


def _unet(net: nn.UNet) -> dict:
    base = net.conv_in.out_channels
    return {
        "data_shape": list(net.data_shape),
        "base_channels": base,
        "channel_mults": [blocks[-1].conv2.out_channels // base for blocks in net.down_blocks],
        "num_res_blocks": len(net.down_blocks[0]),
        "time_embed_size": net.time_embed.size,
        **_condition_args(net.condition_embed),
    }


def _scalars(*names: str) -> Callable[[Any], dict]:
    return lambda sde: {name: float(getattr(sde, name)) for name in names}


# class -> (recorded name, its constructor arguments read from an instance, the fields that
# hold sub-modules). The classes are final, so `type(x) is cls` identifies them.
_LIBRARY: dict[type, tuple[str, Callable[[Any], dict]]] = {
    nn.TimeMLP: ("scoresde.nn.TimeMLP", _time_mlp),
    nn.NoiseConditionalMLP: ("scoresde.nn.NoiseConditionalMLP", _noise_conditional_mlp),
    nn.TimeFreeMLP: ("scoresde.nn.TimeFreeMLP", _time_free_mlp),
    nn.UNet: ("scoresde.nn.UNet", _unet),
    VPSDE: ("scoresde.VPSDE", _scalars("beta_min", "beta_max", "T")),
    SubVPSDE: ("scoresde.SubVPSDE", _scalars("beta_min", "beta_max", "T")),
    VESDE: ("scoresde.VESDE", _scalars("sigma_min", "sigma_max", "T")),
    DirectScore: ("scoresde.DirectScore", lambda m: {}),
    NoisePrediction: ("scoresde.NoisePrediction", lambda m: {}),
    EDMDenoiser: ("scoresde.EDMDenoiser", lambda m: {"sigma_data": m.sigma_data}),
}
_WRAPPERS = {DirectScore: ("net",), NoisePrediction: ("net", "sde"), EDMDenoiser: ("net", "sde")}
_BY_NAME = {name: cls for cls, (name, _) in _LIBRARY.items()}


def class_name(cls: type) -> str:
    return _LIBRARY[cls][0] if cls in _LIBRARY else f"{cls.__module__}.{cls.__qualname__}"


def _json(value, where: str):
    """`value` as JSON (tuples as lists), or a TypeError naming `where`."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _json(v, f"{where}.{k}") for k, v in value.items()}
    if callable(value) and _function_name(value) is not None:
        return {"function": _function_name(value)}
    raise TypeError(
        f"`hyperparameters`: {where} is a {type(value).__name__}; the file stores JSON "
        "(numbers, strings, lists, dicts, None) and jax.nn activations."
    )


def describe(model, hyperparameters: dict | None = None, where: str = "model") -> dict:
    """The recipe of `model`. `hyperparameters` are the constructor keyword arguments of the
    one module in it that is not one of the library's classes."""
    cls = type(model)
    if cls in _LIBRARY:
        name, read = _LIBRARY[cls]
        args = read(model)
        for field in _WRAPPERS.get(cls, ()):
            args[field] = describe(getattr(model, field), hyperparameters, f"{where}.{field}")
        return {"class": name, "args": args}
    if not isinstance(model, eqx.Module):
        raise TypeError(
            f"{where} is a {cls.__name__}, not an Equinox module; save_model saves Equinox "
            "modules (a network, or a parameterisation such as NoisePrediction(net, sde))."
        )
    if hyperparameters is None:
        raise TypeError(
            f"{where} is a {cls.__name__}, which scoresde cannot describe by itself; pass "
            f"hyperparameters={{...}}, the keyword arguments that build it as "
            f"{cls.__name__}(**hyperparameters) (a `key` is supplied on loading)."
        )
    return {"class": class_name(cls), "args": _json(hyperparameters, "hyperparameters")}


def uses_hyperparameters(recipe: dict) -> bool:
    """Whether a user's class (described by `hyperparameters`) appears in `recipe`."""
    if recipe["class"] not in _BY_NAME:
        return True
    return any(
        isinstance(v, dict) and "class" in v and uses_hyperparameters(v)
        for v in recipe["args"].values()
    )


def _takes_key(cls: type) -> bool:
    try:
        return "key" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def build(recipe: dict, classes: Sequence[type] = ()):
    """A model of the structure `recipe` describes (initialised from a fixed key; the
    caller loads the saved arrays into it)."""
    extra = {class_name(c): c for c in classes}
    name = recipe["class"]
    cls = _BY_NAME.get(name) or extra.get(name)
    if cls is None:
        raise ValueError(
            f"the file's model uses the class {name}, which is not one of scoresde's; pass it "
            f"as load_model(path, classes=[{name.rpartition('.')[2]}])."
        )
    args = {}
    for k, v in recipe["args"].items():
        if isinstance(v, dict) and "class" in v:
            v = build(v, classes)
        elif isinstance(v, dict) and set(v) == {"function"}:
            v = _function(v["function"])
        args[k] = v
    if cls in _WRAPPERS:
        positional = [args.pop(f) for f in _WRAPPERS[cls]]
        return cls(*positional, **args)
    if _takes_key(cls) and "key" not in args:
        args["key"] = jr.key(0)
    return cls(**args)


def difference(saved: Any, given: Any, where: str = "model") -> str | None:
    """The first difference between two recipes, in words, or None."""
    is_function = lambda v: isinstance(v, dict) and set(v) == {"function"}  # noqa: E731
    if is_function(saved) or is_function(given):
        saved = saved["function"] if is_function(saved) else saved
        given = given["function"] if is_function(given) else given
    elif isinstance(saved, dict) and isinstance(given, dict):
        if "class" in saved and "class" in given and saved["class"] != given["class"]:
            return f"{where} is {saved['class']} in the file, {given['class']} in the model"
        for k in sorted(set(saved) | set(given), key=lambda k: (k != "class", k != "args", k)):
            here = where if k in ("class", "args") else f"{where}.{k}"
            if k not in saved or k not in given:
                a, b = saved.get(k, "(absent)"), given.get(k, "(absent)")
                return f"{here} is {a} in the file, {b} in the model"
            diff = difference(saved[k], given[k], here)
            if diff is not None:
                return diff
        return None
    if saved != given:
        return f"{where} is {saved} in the file, {given} in the model"
    return None


def check_rebuilds(model, recipe: dict, classes: Sequence[type] = ()) -> None:
    """That `build(recipe)` has `model`'s structure, checked without allocating arrays; a
    ValueError naming the first difference otherwise."""
    rebuilt = eqx.filter_eval_shape(build, recipe, classes)
    is_array = lambda x: eqx.is_array(x) or isinstance(x, jax.ShapeDtypeStruct)  # noqa: E731
    specs = lambda tree: [  # noqa: E731
        (jax.tree_util.keystr(p), tuple(leaf.shape), str(leaf.dtype))
        for p, leaf in jax.tree_util.tree_flatten_with_path(eqx.filter(tree, is_array))[0]
    ]
    a, b = specs(model), specs(rebuilt)
    if a != b:
        pairs = [(x, y) for x, y in zip(a, b, strict=False) if x != y]
        detail = (
            f"the model has {pairs[0][0]}, its rebuild {pairs[0][1]}"
            if pairs
            else f"the model has {len(a)} arrays, its rebuild {len(b)}"
        )
        raise ValueError(
            f"`hyperparameters` do not rebuild the model ({detail}); pass the keyword "
            "arguments its constructor was called with."
        )


def _first_sde(tree):
    """The first SDE inside `tree` (an objective keeps it at `.sde` or `.inputs.sde`)."""
    from .._sde import AbstractSDE

    if isinstance(tree, AbstractSDE):
        return tree
    if isinstance(tree, eqx.Module):
        for child in vars(tree).values():
            found = _first_sde(child)
            if found is not None:
                return found
    return None


def describe_objective(objective) -> dict:
    """What a checkpoint of `fit` records of its objective: its class, and the SDE whose
    marginals the model learns the score of (None for a time-free objective without one).
    The SDE defines the learned function; the loss's weighting or `eps` only change how
    well it is learned."""
    sde = _first_sde(objective)
    if sde is None:
        described = None
    elif type(sde) in _LIBRARY:
        described = describe(sde)
    else:
        described = {"class": class_name(type(sde))}
    return {"class": class_name(type(objective)), "sde": described}


def summary(recipe: dict | None) -> str:
    """A recipe in one line: `scoresde.VPSDE(beta_min=0.1, beta_max=20.0, T=1.0)`."""
    if recipe is None:
        return "no SDE"

    def value(v) -> str:
        if isinstance(v, dict) and "class" in v:
            return summary(v)
        if isinstance(v, float):  # float32 constants: 0.1, not 0.10000000149011612
            return f"{v:.7g}" if "." in f"{v:.7g}" or "e" in f"{v:.7g}" else f"{v:.1f}"
        return str(v)

    args = ", ".join(f"{k}={value(v)}" for k, v in recipe.get("args", {}).items())
    return f"{recipe['class']}({args})"
