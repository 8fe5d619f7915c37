"""Checks on a model file before onnxruntime sees it: file kind sniffing and external-data locations.

The robot computer does not install the `onnx` package, so this walks the protobuf wire format
directly (only the few fields that can carry an external-data reference). Field numbers are from
onnx/onnx.proto3.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

# field numbers (onnx.proto3)
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INIT = 1, 5, 15
_FUNCTION_NODE = 7
_NODE_ATTRIBUTE = 5
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA = 8, 13
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_MAX_DEPTH = 64


class ProtobufError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def sniff_kind(head: bytes) -> str | None:
    """Name the file kind when `head` (first bytes) shows it is certainly not ONNX, else None."""
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return "a Python pickle (e.g. a torch.save checkpoint)"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (e.g. a PyTorch .pt checkpoint, which would need unpickling)"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "an HDF5 file (a dataset, not a model)"
    if len(head) >= 8 and int.from_bytes(head[:8], "little") < 1 << 24 and head[8:9] == b"{":
        return "a safetensors file (a checkpoint; export it to ONNX first)"
    if head[:1] in (b"{", b"[", b"#") or head[:5] == b"<?xml":
        return "a text file"
    return None


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ProtobufError(f"truncated varint at byte {i}")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int | tuple[int, int] | None]]:
    """Yield (field_number, wire_type, value) with value = (start, end) for length-delimited fields."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _varint(buf, i)
        elif wt == 1:
            val, i = None, i + 8
        elif wt == 5:
            val, i = None, i + 4
        elif wt == 2:
            n, i = _varint(buf, i)
            val, i = (i, i + n), i + n
        else:
            raise ProtobufError(f"unsupported wire type {wt} at byte {i}")
        if i > end:
            raise ProtobufError("message runs past its end (truncated or corrupt file)")
        yield num, wt, val


def _sub(buf: bytes, span: tuple[int, int], wanted: set[int]) -> Iterator[tuple[int, tuple[int, int]]]:
    """Length-delimited fields of the message at `span` whose numbers are in `wanted`: (number, (start, end))."""
    for num, wt, val in _fields(buf, span[0], span[1]):
        if wt == 2 and num in wanted and isinstance(val, tuple):
            yield num, val


def _tensor_locations(buf: bytes, span: tuple[int, int], out: list[tuple[str, str]]) -> None:
    name = "?"
    for num, (s, e) in _sub(buf, span, {_TENSOR_NAME, _TENSOR_EXTERNAL_DATA}):
        if num == _TENSOR_NAME:
            name = buf[s:e].decode("utf-8", "replace")
            continue
        entry = {n: buf[a:b].decode("utf-8", "replace") for n, (a, b) in _sub(buf, (s, e), {_ENTRY_KEY, _ENTRY_VALUE})}
        if entry.get(_ENTRY_KEY) == "location":
            out.append((name, entry.get(_ENTRY_VALUE, "")))


def _sparse_locations(buf: bytes, span: tuple[int, int], out: list[tuple[str, str]]) -> None:
    for _, sp in _sub(buf, span, {_SPARSE_VALUES, _SPARSE_INDICES}):
        _tensor_locations(buf, sp, out)


def _graph_locations(buf: bytes, span: tuple[int, int], out: list[tuple[str, str]], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ProtobufError("subgraphs nested too deeply")
    for num, sp in _sub(buf, span, {_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INIT}):
        if num == _GRAPH_INITIALIZER:
            _tensor_locations(buf, sp, out)
        elif num == _GRAPH_SPARSE_INIT:
            _sparse_locations(buf, sp, out)
        else:
            _node_locations(buf, sp, out, depth)


def _node_locations(buf: bytes, span: tuple[int, int], out: list[tuple[str, str]], depth: int) -> None:
    for _, attr in _sub(buf, span, {_NODE_ATTRIBUTE}):
        for num, sp in _sub(buf, attr, {_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES}):
            if num in (_ATTR_T, _ATTR_TENSORS):
                _tensor_locations(buf, sp, out)
            elif num in (_ATTR_SPARSE, _ATTR_SPARSES):
                _sparse_locations(buf, sp, out)
            else:
                _graph_locations(buf, sp, out, depth + 1)


def external_data_locations(model_bytes: bytes) -> list[tuple[str, str]]:
    """(tensor name, location) of every tensor stored outside the .onnx file; raises ProtobufError if corrupt."""
    out: list[tuple[str, str]] = []
    n = len(model_bytes)
    for num, sp in _sub(model_bytes, (0, n), {_MODEL_GRAPH, _MODEL_FUNCTIONS}):
        if num == _MODEL_GRAPH:
            _graph_locations(model_bytes, sp, out, 0)
        else:
            for _, node in _sub(model_bytes, sp, {_FUNCTION_NODE}):
                _node_locations(model_bytes, node, out, 0)
    return out


def check_external_data(model_path: str, model_bytes: bytes) -> list[str]:
    """Problems with external-data references: absolute, escaping the model's folder, or missing files."""
    folder = os.path.realpath(os.path.dirname(os.path.abspath(model_path)))
    problems = []
    for tensor, loc in external_data_locations(model_bytes):
        target = os.path.realpath(os.path.join(folder, loc))
        if os.path.isabs(loc) or os.path.commonpath([folder, target]) != folder:
            problems.append(f"tensor '{tensor}' points at '{loc}', which is outside the model's folder {folder}")
        elif not os.path.isfile(target):
            problems.append(f"tensor '{tensor}' needs external data file '{loc}', which does not exist in {folder}")
    return problems
