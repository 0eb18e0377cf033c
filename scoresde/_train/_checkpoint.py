"""Atomic, verified checkpoints of any Equinox pytree."""

import hashlib
import io
import json
import os
import pathlib
import re
import tempfile
from typing import Any, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


_MAGIC = b"SCORESDE-CKPT\n"
# Format 2 ends with the SHA-256 of everything before it, header included (the loss
# history, the model's recipe). Format 1 hashed the payload only; its files still load.
_FORMAT = 2
_READS = (1, 2)
_DIGEST = 32
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
    checkpoint intact, and the next save of `path` removes the temporary file it left.

    The file is a header (format, leaf paths/shapes/dtypes, metadata) followed by
    `equinox.tree_serialise_leaves`'s payload and the SHA-256 of all of it, so an edit
    anywhere (a weight, the loss history in the header) is refused on loading.

    Raises an `OSError` naming `path` and the fix when it cannot be written (its folder
    read-only, a part of it a file), before anything is serialised.

    **Arguments:**

    - `path`: the file to write (its folder must exist).
    - `tree`: any pytree; its array leaves are saved.
    - `metadata`: a JSON-serialisable `dict` saved beside them (default empty), read back
      by [`read_metadata`][scoresde.read_metadata].
    """
    check_writable(path, "`path`")
    write(path, tree, metadata=metadata)


def _temporaries(path: pathlib.Path) -> list[pathlib.Path]:
    """Temporary files that an interrupted save of `path` left (`.NAME.wPID.XXXXXXXX.tmp`,
    or `.NAME.XXXXXXXX.tmp` from older versions), except those of a live other process,
    which may be saving right now. Only this exact pattern: never another file."""
    own = re.compile(r"\." + re.escape(path.name) + r"\.(?:w(\d+)\.)?[a-z0-9_]{8}\.tmp")
    stale = []
    for candidate in path.parent.glob(f".{path.name}.*.tmp"):
        match = own.fullmatch(candidate.name)
        if match is None:
            continue
        pid = match.group(1)
        if pid is not None and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        stale.append(candidate)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process, or no way to tell: keep its file
    return True


def check_writable(path: str | os.PathLike, name: str = "`checkpoint`") -> None:
    """That a file can be written at `path`, tried now by creating (and removing) a
    temporary file in its folder, which is created as `write` would; a one-line OSError
    naming `name`, the path and the fix otherwise. Trying is the only test that tells the
    truth for root, ACLs and read-only mounts alike."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"{name} {path} is a folder; pass a file path, e.g. {path / 'run.ckpt'}."
        )
    for parent in (path.parent, *path.parent.parents):
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(
                    f"{name} {path}: {parent} is a file, not a folder; choose a path in a folder."
                )
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.w{os.getpid()}.", suffix=".tmp"
        )
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise type(e)(
            f"{name} {path} cannot be written ({reason} in {path.parent}); choose a writable "
            "folder, or fix its permissions."
        ) from e


def write(
    path: str | os.PathLike, tree: Any, *, metadata: dict | None = None, model: dict | None = None
) -> None:
    """`save_checkpoint`, with the header's `model` entry (`{"recipe": ..., "at": ...}`:
    how to rebuild the model stored at leaf path prefix `at`) when given."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, tree)
    payload = buffer.getvalue()
    header = {
        "format": _FORMAT,
        "leaves": _leaf_specs(tree),
        "payload_bytes": len(payload),
        "metadata": metadata or {},
    }
    if model is not None:
        header["model"] = model
    head = json.dumps(header).encode()
    body = _MAGIC + len(head).to_bytes(8, "little") + head + payload
    for stale in _temporaries(path):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.w{os.getpid()}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body + hashlib.sha256(body).digest())
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
        declared = int(header["payload_bytes"])
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path} is truncated or corrupt: unreadable header.") from e
    version = header.get("format")
    if version not in _READS:
        newer = isinstance(version, int) and version > _FORMAT
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}; this scoresde reads formats "
            f"{', '.join(map(str, _READS))}" + ("; upgrade scoresde to load it." if newer else ".")
        )
    trailer = _DIGEST if version >= 2 else 0
    payload = raw[start + size : len(raw) - trailer]
    if len(raw) < start + size + declared + trailer:
        raise CheckpointError(
            f"{path} is truncated: {len(raw)} bytes, expected {start + size + declared + trailer}."
        )
    if len(payload) != declared:
        raise CheckpointError(
            f"{path} is corrupt: {len(payload)} payload bytes, expected {declared}."
        )
    if version >= 2:
        if hashlib.sha256(raw[:-_DIGEST]).digest() != raw[-_DIGEST:]:
            raise CheckpointError(
                f"{path} is corrupt or was edited: its SHA-256 does not match (the header, "
                "e.g. the loss history, or the arrays changed since it was written)."
            )
    elif hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CheckpointError(f"{path} is corrupt: the payload's SHA-256 does not match.")
    return header, payload


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a checkpoint, after verifying the file (its SHA-256).

    **Arguments:**

    - `path`: a file written by [`save_checkpoint`][scoresde.save_checkpoint],
      [`save_model`][scoresde.save_model] or [`fit`][scoresde.fit].

    **Returns:**

    The JSON metadata saved with it, a `dict`. Raises `CheckpointError` for a truncated
    or corrupt file.
    """
    return _read(pathlib.Path(path))[0]["metadata"]


def _spec_difference(saved: list, expected: list) -> str:
    if len(saved) != len(expected):
        return f"{len(saved)} arrays saved, the model has {len(expected)}"
    pairs = zip(saved, expected, strict=True)
    a, b = next((a, b) for a, b in pairs if a != b)
    return f"saved {a}, the model has {b}"


def _arrays(payload: bytes, count: int, path) -> list[np.ndarray]:
    """The payload's arrays, in order (Equinox writes one `np.save` per array leaf)."""
    stream = io.BytesIO(payload)
    out = [np.load(stream) for _ in range(count)]
    if stream.tell() != len(payload):
        raise CheckpointError(f"{path}: the payload holds more than its {count} listed arrays.")
    return out


def _model_recipe(like) -> dict | None:
    """The recipe of the model in `like` (itself, or a TrainState's model), or None when
    it is not one the library can describe without `hyperparameters`."""
    from ._fit import TrainState
    from ._recipe import describe

    model = like.model if isinstance(like, TrainState) else like
    try:
        return describe(model)
    except (TypeError, ValueError, AttributeError):
        return None


def load_into(path, header: dict, payload: bytes, like: T) -> T:
    """The file's arrays loaded into `like`: the whole tree when the leaves match, or, for
    a model `like` and a file that stores a model beside other state (a `fit` checkpoint
    holds its EMA model at `.ema_model`), that model. A `CheckpointError` naming the first
    difference otherwise."""
    from ._recipe import difference

    saved_model = header.get("model")
    given = _model_recipe(like) if saved_model is not None else None
    if given is not None:
        diff = difference(saved_model["recipe"], given)
        if diff is not None:
            raise CheckpointError(
                f"{path} was saved from a different model: {diff}. Build the model as "
                "saved, or load it with load_model(path)."
            )
    expected = _leaf_specs(like)
    if header["leaves"] == expected:
        return eqx.tree_deserialise_leaves(io.BytesIO(payload), like)
    at = saved_model["at"] if saved_model is not None else ".ema_model"
    if at:
        inner = [
            [p[len(at) :], shape, dtype]
            for p, shape, dtype in header["leaves"]
            if p.startswith(at + ".") or p.startswith(at + "[")
        ]
        if inner and inner == expected:
            arrays = _arrays(payload, len(header["leaves"]), path)
            picked = [
                jnp.asarray(a)
                for a, (p, _, _) in zip(arrays, header["leaves"], strict=True)
                if p.startswith(at + ".") or p.startswith(at + "[")
            ]
            params, static = eqx.partition(like, eqx.is_array)
            treedef = jax.tree.structure(params)
            return eqx.combine(jax.tree.unflatten(treedef, picked), static)
    raise CheckpointError(
        f"{path} was saved from a different model or optimiser "
        f"({_spec_difference(header['leaves'], expected)}). Build the same model, objective "
        "and optimiser as the run that wrote it; to sample, load the model alone: "
        "load_checkpoint(path, model) or load_model(path)."
    )


def load_checkpoint(path: str | os.PathLike, like: T) -> tuple[T, dict]:
    """Loads a checkpoint into the structure of `like`. Returns `(tree, metadata)`.

    `like` is either a pytree of the same kind as the one saved (same model class, sizes
    and optimiser: for a checkpoint of [`fit`][scoresde.fit], a
    [`TrainState`][scoresde.TrainState]), or just a model built the same way as the one
    saved: from a file of [`save_model`][scoresde.save_model] that is the model; from a
    checkpoint of `fit` (or a run directory's `checkpoint.ckpt`), it is the EMA model,
    the one [`FitResult.model`][scoresde.FitResult] samples with.

    Raises `CheckpointError` for a truncated or corrupt file, and for one made for another
    model, naming the first difference (the class, a constructor argument such as the
    activation, the SDE or one of its constants where the file records how its model was
    built; else the first array whose path, shape or dtype differs), so nothing is ever
    loaded partially.

    **Arguments:**

    - `path`: the checkpoint file.
    - `like`: the template, as above; only its structure and static parts are used.

    **Returns:**

    `(tree, metadata)`: `like` with the saved arrays, and the saved metadata `dict`.
    """
    path = pathlib.Path(path)
    header, payload = _read(path)
    return load_into(path, header, payload, like), header["metadata"]


def read_header(path: str | os.PathLike) -> tuple[dict, bytes]:
    """The verified header and payload of a checkpoint."""
    return _read(pathlib.Path(path))
