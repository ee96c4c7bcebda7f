"""The external-data files model.onnx names, read with a minimal protobuf scan.

An ONNX tensor may keep its bytes in another file: its `external_data` entries
carry a `location`, a path relative to model.onnx (gpt2onnx export writes
`model.onnx_data` for models over 2 GB). A crafted model.onnx can name
"../../home/you/.ssh/id_rsa", an absolute path, or a symlink that leaves the
folder; onnxruntime would open it (recent versions refuse some of these, older
ones did not). So before onnxruntime sees the graph, gpt2onnx lists every
location and allows only names the manifest lists: those were already checked
to be plain files inside the folder, of the right size and sha256.

The runtime may not import `onnx`, so the locations come from a walk of the
protobuf wire format: it descends only into the messages that can hold a
tensor (model -> graph -> node -> attribute -> tensor, and subgraphs,
functions, sparse tensors and training graphs) and steps over every other
field by its length. The file is memory-mapped, so the weights of a
single-file model are never read; the walk takes milliseconds.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path, PurePosixPath
from typing import Iterator

from .errors import ModelLoadError

# Message kinds, and for each the fields (onnx.proto's numbers) that hold a message to descend into.
_MODEL, _TRAINING, _FUNCTION, _GRAPH, _NODE, _ATTRIBUTE, _SPARSE, _TENSOR, _ENTRY = range(9)
_CHILDREN = {
    _MODEL: {7: _GRAPH, 20: _TRAINING, 25: _FUNCTION},  # graph, training_info, functions
    _TRAINING: {1: _GRAPH, 2: _GRAPH},  # initialization, algorithm
    _FUNCTION: {7: _NODE, 11: _ATTRIBUTE},  # node, attribute_proto (default values)
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},  # node, initializer, sparse_initializer
    _NODE: {5: _ATTRIBUTE},  # attribute
    _ATTRIBUTE: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},  # t, g, tensors, graphs, sparse_tensor(s)
    _SPARSE: {1: _TENSOR, 2: _TENSOR},  # values, indices
    _TENSOR: {13: _ENTRY},  # external_data: StringStringEntryProto
}
_KEY, _VALUE = 1, 2  # StringStringEntryProto's fields
_LENGTH_DELIMITED = 2


class _Malformed(Exception):
    """The bytes are not a protobuf message."""


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed(pos)
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value end) of each field of the message buf[start:end]."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:  # varint
            _, after = _varint(buf, pos, end)
        elif wire == 1:  # fixed64
            after = pos + 8
        elif wire == _LENGTH_DELIMITED:
            length, pos = _varint(buf, pos, end)
            after = pos + length
        elif wire == 5:  # fixed32
            after = pos + 4
        else:  # groups (3, 4) are not used by ONNX; 6 and 7 do not exist
            raise _Malformed(pos)
        if number == 0 or after > end:
            raise _Malformed(pos)
        yield number, wire, pos, after
        pos = after


def _scan(buf, size: int) -> list[str]:
    found = []
    stack = [(_MODEL, 0, size)]  # messages still to walk; a stack, not recursion, so deep nesting is safe
    while stack:
        kind, start, end = stack.pop()
        if kind == _ENTRY:
            entry = {number: buf[a:b] for number, wire, a, b in _fields(buf, start, end) if wire == _LENGTH_DELIMITED}
            if entry.get(_KEY) == b"location":
                try:
                    found.append(entry.get(_VALUE, b"").decode("utf-8"))
                except UnicodeDecodeError:
                    raise _Malformed(start) from None
            continue
        children = _CHILDREN[kind]
        for number, wire, a, b in _fields(buf, start, end):
            if wire == _LENGTH_DELIMITED and number in children:
                stack.append((children[number], a, b))
    return found


def locations(model_path: Path) -> list[str]:
    """Every external-data `location` in an ONNX file, as written (possibly repeated)."""
    with open(model_path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return []  # onnxruntime will refuse it; nothing is named
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                return _scan(buf, size)
            except _Malformed as e:
                raise ModelLoadError(f"{model_path} is not a valid ONNX file (broken protobuf near byte {e.args[0]}): re-export the model") from None


def check(folder: Path, model_path: Path, listed: set[str]) -> None:
    """Refuse a graph whose external data is not a file the manifest lists (checked inside `folder`)."""
    for location in locations(model_path):
        name = PurePosixPath(location.replace("\\", "/"))  # onnxruntime takes either separator
        if not location or "\0" in location or name.is_absolute() or ".." in name.parts or Path(location).is_absolute() or ":" in location:
            raise ModelLoadError(f"{model_path} reads weights from {location!r}, outside the model folder: refusing to load it")
        if str(name) not in listed:
            raise ModelLoadError(
                f"{model_path} reads weights from {location!r}, which the manifest does not list: "
                "refusing unchecked data; re-export the model"
            )
