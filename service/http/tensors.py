"""KServe v2 REST inference bodies <-> the data plane's terms: JSON tensors and the binary tensor data extension.

A request body is a JSON object, optionally followed by raw tensor bytes (its length in the
`Inference-Header-Content-Length` header; each binary input says `"parameters": {"binary_data_size": N}`, in
input order). `RestRequest` is the data plane's `Request`, decoded inside `DataPlane.infer` so that a malformed
body is counted under the model it names; its `answer` builds the response, binary where asked for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from aiohttp import web

from modelrepo.manifest import Manifest
from seqserve_client import codec
from service.dataplane import kserve
from service.dataplane.kserve import InferRequest, Input, Parameter
from service.engine.errors import InvalidInput, clip
from service.engine.model import ServedModel
from service.engine.sequences import SequenceFlags

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_SIZE, BINARY_DATA, BINARY_OUTPUT = "binary_data_size", "binary_data", "binary_data_output"


class RestRequest:
    def __init__(self, body: bytes, header_length: str | None) -> None:
        self._body = body
        self._header_length = header_length
        self._parsed: dict[str, Any] | None = None
        self._binary = b""

    def sequence(self) -> SequenceFlags | None:
        return kserve.sequence_flags(_parameters(self._json().get("parameters")))

    def prepare(self, manifest: Manifest, sequence: SequenceFlags | None) -> InferRequest:
        outputs = [_name(out, "output") for out in _list(self._json().get("outputs", []), "outputs")]
        return InferRequest(kserve.input_arrays(manifest, self._inputs()), sequence,
                            kserve.requested_outputs(manifest, outputs))

    def answer(self, model: ServedModel, arrays: Mapping[str, np.ndarray]) -> web.Response:
        """The KServe response: JSON `data`, or raw bytes after the JSON for the outputs asked for as binary."""
        request = self._json()
        manifest = model.manifest
        default = _parameters(request.get("parameters")).get(BINARY_OUTPUT) is True
        binary_by_name = {_name(out, "output"): _parameters(out.get("parameters")).get(BINARY_DATA)
                          for out in request.get("outputs", [])}
        outputs, blobs = [], []
        for name, array in arrays.items():
            dtype = codec.of_numpy(array.dtype)
            entry: dict[str, Any] = {"name": name, "datatype": dtype.kserve, "shape": list(array.shape)}
            wanted = binary_by_name.get(name)
            if wanted is True or (wanted is None and default):
                blob = codec.to_bytes(array, dtype)
                entry["parameters"] = {BINARY_SIZE: len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = array.reshape(-1).tolist()
            outputs.append(entry)
        body: dict[str, Any] = {"model_name": manifest.name, "model_version": str(manifest.version),
                                "outputs": outputs}
        if isinstance(request.get("id"), str) and request["id"]:
            body["id"] = request["id"]
        header = json.dumps(body, separators=(",", ":")).encode()
        if not blobs:
            return web.Response(body=header, content_type="application/json")
        return web.Response(body=b"".join([header, *blobs]), content_type="application/octet-stream",
                            headers={HEADER_LENGTH: str(len(header))})

    def _json(self) -> dict[str, Any]:
        if self._parsed is None:
            self._parsed, self._binary = _split(self._body, self._header_length)
        return self._parsed

    def _inputs(self) -> list[Input]:
        inputs, offset = [], 0
        for tensor in _list(self._json().get("inputs"), "inputs"):
            name = _name(tensor, "input")
            datatype = tensor.get("datatype")
            shape = tensor.get("shape")
            if not isinstance(datatype, str):
                raise InvalidInput(f"input {clip(name)}: datatype must be a string such as \"FP32\"")
            if not isinstance(shape, list) or not all(type(d) is int for d in shape):
                raise InvalidInput(f"input {clip(name)}: shape must be a list of integers")
            size = _parameters(tensor.get("parameters")).get(BINARY_SIZE)
            if size is None:
                if "data" not in tensor:
                    raise InvalidInput(f"input {clip(name)}: no data (JSON 'data' or binary_data_size)")
                inputs.append(Input(name, datatype, shape, values=tensor["data"]))
                continue
            if type(size) is not int or size < 0 or offset + size > len(self._binary):
                raise InvalidInput(f"input {clip(name)}: binary_data_size {clip(size)} is not within the "
                                   f"{len(self._binary) - offset} binary bytes left")
            inputs.append(Input(name, datatype, shape, raw=memoryview(self._binary)[offset:offset + size]))
            offset += size
        if offset != len(self._binary):
            raise InvalidInput(f"{len(self._binary) - offset} binary bytes after the last binary input")
        return inputs


def _split(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON header (a dict) and the binary part after it."""
    length = len(body)
    if header_length is not None:
        if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(body):
            raise InvalidInput(f"{HEADER_LENGTH} {clip(header_length)} is not a length within the body "
                               f"({len(body)} bytes)")
        length = int(header_length)
    try:
        parsed = json.loads(body[:length])
    except (ValueError, RecursionError):
        raise InvalidInput("the request body is not valid JSON (with binary data: set "
                           f"{HEADER_LENGTH} to the JSON's length)") from None
    if not isinstance(parsed, dict):
        raise InvalidInput("the request body must be a JSON object")
    return parsed, body[length:]


def _list(value: object, what: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InvalidInput(f"'{what}' must be a list of objects")
    return value


def _name(tensor: dict[str, Any], what: str) -> str:
    name = tensor.get("name")
    if not isinstance(name, str):
        raise InvalidInput(f"every {what} needs a 'name' string")
    return name


def _parameters(value: object) -> dict[str, Parameter]:
    """A parameters object as plain values; a kind KServe does not have (a list, an object, null) becomes None."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("'parameters' must be an object")
    return {key: v if isinstance(v, bool | int | str | float) else None for key, v in value.items()}
