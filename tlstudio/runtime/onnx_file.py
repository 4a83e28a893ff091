"""What an ONNX file is, read from its bytes without running or fully decoding it.

An ONNX model is a protobuf ``ModelProto``. :func:`scan_onnx` walks its wire format (the
few fields it needs, skipping tensor payloads) to tell whether a file is one and to list
every tensor whose data lives in an external file: initializers and sparse initializers,
tensors in node attributes (``Constant`` and friends), in subgraphs (``If``, ``Loop``,
``Scan``), in functions and in training graphs. Field numbers are those of onnx.proto
(onnx 1.23). The ``onnx`` package is not used: importing it takes over a second.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# wire types
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
# ModelProto
_M_IR_VERSION, _M_GRAPH, _M_TRAINING_INFO, _M_FUNCTIONS = 1, 7, 20, 25
# GraphProto
_G_NODE, _G_INITIALIZER, _G_SPARSE_INITIALIZER = 1, 5, 15
# NodeProto / FunctionProto
_N_ATTRIBUTE, _F_NODE, _F_ATTRIBUTE_PROTO = 5, 7, 11
# AttributeProto
_A_T, _A_G, _A_TENSORS, _A_GRAPHS, _A_SPARSE, _A_SPARSES = 5, 6, 10, 11, 22, 23
# TrainingInfoProto
_T_INITIALIZATION, _T_ALGORITHM = 1, 2
# SparseTensorProto
_S_VALUES, _S_INDICES = 1, 2
# TensorProto and StringStringEntryProto
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 8, 13, 14
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_DATA_LOCATION_EXTERNAL = 1
#: subgraphs nest (If inside Loop inside If...); deeper than this is not a real model
_MAX_DEPTH = 64


class _Malformed(Exception):
    """The bytes are not a well-formed ONNX protobuf."""


@dataclass(frozen=True)
class ExternalTensor:
    """A tensor whose data lives in another file: ``location`` as written in the model
    (relative to the model's folder when well-formed), None when the model marks the tensor
    external without saying where."""

    name: str
    location: str | None


@dataclass
class OnnxScan:
    """``is_onnx``: the file parses as an ONNX ModelProto with an IR version and a graph;
    ``external``: its tensors stored in external files."""

    is_onnx: bool
    external: list[ExternalTensor] = field(default_factory=list)


def scan_onnx(path: Path) -> OnnxScan:
    """Parse ``path`` as an ONNX model far enough to answer :class:`OnnxScan`'s questions.
    Reads through a memory map: tensor payloads are skipped, not read."""
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            return OnnxScan(False)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            walker = _Walker(buf)
            try:
                walker.model(0, len(buf))
            except (_Malformed, IndexError):
                return OnnxScan(False)
            return OnnxScan(True, walker.external)


class _Walker:
    def __init__(self, buf: mmap.mmap):
        self.buf = buf
        self.external: list[ExternalTensor] = []

    # -- wire format ---------------------------------------------------------
    def varint(self, pos: int, end: int) -> tuple[int, int]:
        result = shift = 0
        while True:
            if pos >= end or shift > 63:
                raise _Malformed
            b = self.buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result, pos
            shift += 7

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
        """(field number, wire type, a, b) of each field in [start, end): for varints a is
        the value; for length-delimited fields [a, b) is the payload."""
        buf, varint = self.buf, self.varint
        pos = start
        while pos < end:
            key = buf[pos]  # keys and lengths are mostly one byte: skip the general decoder
            if key < 0x80:
                pos += 1
            else:
                key, pos = varint(pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise _Malformed
            if wire == _LEN:
                if pos >= end:
                    raise _Malformed
                length = buf[pos]
                if length < 0x80:
                    pos += 1
                else:
                    length, pos = varint(pos, end)
                a, pos = pos, pos + length
                if pos > end:
                    raise _Malformed
                yield number, wire, a, pos
                continue
            if wire == _VARINT:
                value, pos = varint(pos, end)
                yield number, wire, value, pos
                continue
            if wire == _I64:
                pos += 8
            elif wire == _I32:
                pos += 4
            else:  # groups (3, 4) are not used by ONNX; 6 and 7 do not exist
                raise _Malformed
            if pos > end:
                raise _Malformed
            yield number, wire, pos, pos

    def text(self, a: int, b: int) -> str:
        return self.buf[a:b].decode("utf-8", errors="replace")

    # -- messages ------------------------------------------------------------
    def model(self, start: int, end: int) -> None:
        has_version = has_graph = False
        for number, wire, a, b in self.fields(start, end):
            if number == _M_IR_VERSION and wire == _VARINT:
                has_version = True
            elif number == _M_GRAPH and wire == _LEN:
                has_graph = True
                self.graph(a, b, 0)
            elif number == _M_TRAINING_INFO and wire == _LEN:
                for n, w, c, d in self.fields(a, b):
                    if n in (_T_INITIALIZATION, _T_ALGORITHM) and w == _LEN:
                        self.graph(c, d, 0)
            elif number == _M_FUNCTIONS and wire == _LEN:
                self.function(a, b, 0)
        if not (has_version and has_graph):
            raise _Malformed

    def graph(self, start: int, end: int, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise _Malformed
        for number, wire, a, b in self.fields(start, end):
            if wire != _LEN:
                continue
            if number == _G_NODE:
                self.node(a, b, depth)
            elif number == _G_INITIALIZER:
                self.tensor(a, b)
            elif number == _G_SPARSE_INITIALIZER:
                self.sparse(a, b)

    def function(self, start: int, end: int, depth: int) -> None:
        for number, wire, a, b in self.fields(start, end):
            if wire == _LEN and number == _F_NODE:
                self.node(a, b, depth)
            elif wire == _LEN and number == _F_ATTRIBUTE_PROTO:
                self.attribute(a, b, depth)

    def node(self, start: int, end: int, depth: int) -> None:
        for number, wire, a, b in self.fields(start, end):
            if wire == _LEN and number == _N_ATTRIBUTE:
                self.attribute(a, b, depth)

    def attribute(self, start: int, end: int, depth: int) -> None:
        for number, wire, a, b in self.fields(start, end):
            if wire != _LEN:
                continue
            if number in (_A_T, _A_TENSORS):
                self.tensor(a, b)
            elif number in (_A_G, _A_GRAPHS):
                self.graph(a, b, depth + 1)
            elif number in (_A_SPARSE, _A_SPARSES):
                self.sparse(a, b)

    def sparse(self, start: int, end: int) -> None:
        for number, wire, a, b in self.fields(start, end):
            if wire == _LEN and number in (_S_VALUES, _S_INDICES):
                self.tensor(a, b)

    def tensor(self, start: int, end: int) -> None:
        name = ""
        external = False
        locations: list[str | None] = []
        for number, wire, a, b in self.fields(start, end):
            if number == _TENSOR_NAME and wire == _LEN:
                name = self.text(a, b)
            elif number == _TENSOR_DATA_LOCATION and wire == _VARINT:
                external = external or a == _DATA_LOCATION_EXTERNAL
            elif number == _TENSOR_EXTERNAL_DATA and wire == _LEN:
                external = True  # any external_data entry counts, whatever data_location says
                key = value = None
                for n, w, c, d in self.fields(a, b):
                    if n == _ENTRY_KEY and w == _LEN:
                        key = self.text(c, d)
                    elif n == _ENTRY_VALUE and w == _LEN:
                        value = self.text(c, d)
                if key == "location":
                    locations.append(value)
        if external:
            self.external += [ExternalTensor(name, loc) for loc in locations or [None]]
