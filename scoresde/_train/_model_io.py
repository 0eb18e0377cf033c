"""`save_model` / `load_model`: a model in one file that records how to rebuild it."""

import os
import pathlib
from collections.abc import Sequence

import equinox as eqx

from ._checkpoint import check_writable, CheckpointError, load_into, read_header, write
from ._recipe import build, check_rebuilds, describe, uses_hyperparameters


def save_model(
    path: str | os.PathLike,
    model: eqx.Module,
    *,
    hyperparameters: dict | None = None,
    metadata: dict | None = None,
) -> None:
    r"""Saves a model with the recipe that rebuilds it, so
    [`load_model`][scoresde.load_model] needs no template.

    Equinox's serialisation pattern (array leaves by `eqx.tree_serialise_leaves`, the
    hyperparameters as JSON in front), written atomically and verified by SHA-256 like
    [`save_checkpoint`][scoresde.save_checkpoint]. The file records:

    - each module's class and constructor arguments: the library's networks
      ([`TimeMLP`][scoresde.nn.TimeMLP], [`UNet`][scoresde.nn.UNet], ...: sizes,
      activation, condition), parameterisations
      ([`NoisePrediction`][scoresde.NoisePrediction], ...) and SDEs (class and constants)
      are read from the model itself;
    - every array leaf (weights and the SDE's constants), bit for bit.

    **Arguments:**

    - `path`: the file to write (conventionally `*.eqx`); its folder is created.
    - `model`: an Equinox module: a network, or a parameterisation wrapping one and an SDE.
    - `hyperparameters`: for a network class of your own inside `model` (one such class at
      most): the keyword arguments that build it, `MyNet(**hyperparameters)` (numbers,
      strings, lists, dicts, `jax.nn` activations; a `key` is supplied on loading when the
      constructor takes one). Checked at once by rebuilding its structure.
    - `metadata`: any JSON-able dict stored beside it (read it with
      [`read_metadata`][scoresde.read_metadata]).

    Raises `TypeError` for a module the library cannot describe without
    `hyperparameters` (or an activation outside `jax.nn`/`jax.numpy`), and `ValueError` when
    `hyperparameters` do not rebuild the model's structure, and an `OSError` naming `path`
    when it cannot be written, before anything is written.
    """
    recipe = describe(model, hyperparameters)
    if hyperparameters is not None and not uses_hyperparameters(recipe):
        raise ValueError(
            "`hyperparameters` are for a network class of your own; this model is built from "
            "scoresde's classes only, whose arguments are recorded automatically: drop it."
        )
    classes = [type(m) for m in _modules(model)]
    check_rebuilds(model, recipe, classes)
    check_writable(path, "`path`")
    write(path, model, metadata=metadata, model={"recipe": recipe, "at": ""})


def _modules(tree) -> list:
    is_module = lambda x: isinstance(x, eqx.Module)  # noqa: E731
    out = []

    def visit(node):
        if is_module(node):
            out.append(node)
            for child in vars(node).values():
                visit(child)
        elif isinstance(node, (list, tuple)):
            for child in node:
                visit(child)
        elif isinstance(node, dict):
            for child in node.values():
                visit(child)

    visit(tree)
    return out


def load_model(path: str | os.PathLike, *, classes: Sequence[type] = ()) -> eqx.Module:
    r"""Loads a model saved by [`save_model`][scoresde.save_model], rebuilding it from the
    file's recipe; no template is needed:

    ```python
    model = sd.load_model("model.eqx")
    ```

    Also reads a checkpoint of [`fit`][scoresde.fit] (and a CLI run's `checkpoint.ckpt`),
    returning its EMA model, the one [`FitResult.model`][scoresde.FitResult] samples with.
    The arrays are restored bit for bit, so the loaded model samples exactly as the saved
    one did with the same key.

    **Arguments:**

    - `path`: the file.
    - `classes`: network classes of your own that the file names (saved with
      `hyperparameters=`); the library's own classes need not be listed. Only listed or
      library classes are ever constructed.

    Raises `CheckpointError` (a `ValueError`) for a corrupt file, a file without a recipe
    (written by `save_checkpoint`, or by an older scoresde: load it with
    `load_checkpoint(path, like)`), or a recipe naming a class not in `classes`.

    **Returns:**

    The model, an `eqx.Module` equal (bitwise) to the one saved.
    """
    path = pathlib.Path(path)
    header, payload = read_header(path)
    saved = header.get("model")
    if saved is None:
        raise CheckpointError(
            f"{path} records no model recipe (written by save_checkpoint or an older "
            "scoresde); load it with load_checkpoint(path, like), `like` a model built the "
            "same way."
        )
    try:
        like = build(saved["recipe"], classes)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from e
    return load_into(path, header, payload, like)
