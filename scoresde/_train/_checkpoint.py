"""Atomic, verified checkpoints of any Equinox pytree."""

import hashlib
import io
import json
import os
import pathlib
import tempfile
from typing import Any, TypeVar

import equinox as eqx
import jax
import numpy as np


_MAGIC = b"SCORESDE-CKPT\n"
_FORMAT = 1
T = TypeVar("T")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: truncated, corrupt, or made for another model."""


def _leaf_specs(tree) -> list[list]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(eqx.filter(tree, eqx.is_array))
    return [
        [jax.tree_util.keystr(path), list(np.shape(leaf)), str(np.asarray(leaf).dtype)]
        for path, leaf in leaves
    ]


def save_checkpoint(path: str | os.PathLike, tree: Any, *, metadata: dict | None = None) -> None:
    """Writes `tree` (every array leaf; static parts come from the template at load time)
    and JSON-able `metadata` to `path` atomically: a temporary file in the same folder,
    flushed and fsynced, then `os.replace`d over `path`. A crash mid-write leaves the old
    checkpoint intact.

    The file is a header (format, leaf paths/shapes/dtypes, SHA-256 of the payload,
    metadata) followed by `equinox.tree_serialise_leaves`'s payload.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, tree)
    payload = buffer.getvalue()
    header = {
        "format": _FORMAT,
        "leaves": _leaf_specs(tree),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload_bytes": len(payload),
        "metadata": metadata or {},
    }
    head = json.dumps(header).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + len(head).to_bytes(8, "little") + head + payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: pathlib.Path) -> tuple[dict, bytes]:
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    raw = path.read_bytes()
    if not raw.startswith(_MAGIC) or len(raw) < len(_MAGIC) + 8:
        raise CheckpointError(f"{path} is not a scoresde checkpoint (bad magic bytes).")
    start = len(_MAGIC) + 8
    size = int.from_bytes(raw[len(_MAGIC) : start], "little")
    try:
        header = json.loads(raw[start : start + size])
    except ValueError as e:
        raise CheckpointError(f"{path} is truncated or corrupt: unreadable header.") from e
    payload = raw[start + size :]
    if header.get("format") != _FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {header.get('format')}; this scoresde reads "
            f"format {_FORMAT}."
        )
    if len(payload) != header["payload_bytes"]:
        raise CheckpointError(
            f"{path} is truncated or corrupt: {len(payload)} payload bytes, expected "
            f"{header['payload_bytes']}."
        )
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise CheckpointError(f"{path} is corrupt: the payload's SHA-256 does not match.")
    return header, payload


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a checkpoint, after verifying the file."""
    return _read(pathlib.Path(path))[0]["metadata"]


def load_checkpoint(path: str | os.PathLike, like: T) -> tuple[T, dict]:
    """Loads a checkpoint written by `save_checkpoint` into the structure of `like` (a
    pytree of the same kind: same model class, sizes and optimiser). Returns
    `(tree, metadata)`.

    Raises `CheckpointError` for a truncated or corrupt file, and for one whose leaves
    (paths, shapes, dtypes) differ from `like`'s, naming the first difference, so nothing
    is ever loaded partially.
    """
    path = pathlib.Path(path)
    header, payload = _read(path)
    expected = _leaf_specs(like)
    if header["leaves"] != expected:
        if len(header["leaves"]) != len(expected):
            detail = f"{len(header['leaves'])} arrays saved, the model has {len(expected)}"
        else:
            pairs = zip(header["leaves"], expected, strict=True)
            saved, want = next((a, b) for a, b in pairs if a != b)
            detail = f"saved {saved}, the model has {want}"
        raise CheckpointError(
            f"{path} was saved from a different model or optimiser ({detail}). Build the "
            "same model, objective and optimiser as the run that wrote it."
        )
    tree = eqx.tree_deserialise_leaves(io.BytesIO(payload), like)
    return tree, header["metadata"]
