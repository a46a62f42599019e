"""KServe v2 REST handlers: each decodes, asks the data plane and encodes (docs/web.md lists the endpoints)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from modelrepo.manifest import Manifest
from seqserve_client import codec
from service.dataplane import DataPlane
from service.dataplane.kserve import parse_version
from service.engine.errors import InvalidInput
from service.http.tensors import HEADER_LENGTH, RestRequest

PLATFORM = "onnxruntime_onnx"
VARIABLE = -1


class Rest:
    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane

    def routes(self) -> list[web.RouteDef]:
        model = "/v2/models/{name}"
        versioned = "/v2/models/{name}/versions/{version}"
        return [
            web.get("/v2/health/live", self.live),
            web.get("/v2/health/ready", self.ready),
            web.get("/v2", self.server_metadata),
            web.get(model, self.metadata),
            web.get(versioned, self.metadata),
            web.get(f"{model}/ready", self.model_ready),
            web.get(f"{versioned}/ready", self.model_ready),
            web.post(f"{model}/infer", self.infer),
            web.post(f"{versioned}/infer", self.infer),
            web.post("/v2/repository/index", self.repository_index),
            web.post("/v2/repository/models/{name}/load", self.load),
            web.post("/v2/repository/models/{name}/unload", self.unload),
        ]

    async def live(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self._dataplane.live() else 503)

    async def ready(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self._dataplane.ready() else 503)

    async def server_metadata(self, request: web.Request) -> web.Response:
        name, release, extensions = self._dataplane.server_metadata()
        return web.json_response({"name": name, "version": release, "extensions": list(extensions)})

    async def metadata(self, request: web.Request) -> web.Response:
        model = self._dataplane.model(request.match_info["name"], _version(request))
        return web.json_response(model_metadata(model.manifest, self._dataplane.versions(model.manifest.name)))

    async def model_ready(self, request: web.Request) -> web.Response:
        ready = self._dataplane.model_ready(request.match_info["name"], _version(request))
        return web.Response(status=200 if ready else 400)

    async def infer(self, request: web.Request) -> web.Response:
        body = await request.read()  # at most --max-message-bytes (the application's client_max_size): else 413
        rest = RestRequest(body, request.headers.get(HEADER_LENGTH))
        return await self._dataplane.infer(request.match_info["name"], request.match_info.get("version", ""), rest,
                                           rest.answer)

    async def repository_index(self, request: web.Request) -> web.Response:
        ready_only = (await _object(request)).get("ready") is True
        rows = sorted(self._dataplane.statuses(), key=lambda s: (s.name, s.version))
        return web.json_response([{"name": s.name, "version": str(s.version), "state": s.state, "reason": s.reason}
                                  for s in rows if s.ready or not ready_only])

    async def load(self, request: web.Request) -> web.Response:
        """Triton's model control (docs/model-control.md): load or reload a model from the repository; a model sent
        with the request ("config", "file:" parameters) is refused, as on gRPC."""
        if parameters := (await _object(request)).get("parameters"):
            raise InvalidInput(f"load takes no parameters here (got {sorted(parameters)[:8]}): put the model into "
                               "the repository and load it by name")
        await self._dataplane.load_model(request.match_info["name"])
        return web.json_response({})

    async def unload(self, request: web.Request) -> web.Response:
        """Unload every version: 409 (FAILED_PRECONDITION) with live sessions unless {"parameters": {"force": true}}."""
        parameters = (await _object(request)).get("parameters") or {}
        if not isinstance(parameters, dict) or set(parameters) - {"force", "unload_dependents"}:
            raise InvalidInput("unload takes the parameters force and unload_dependents only")
        await self._dataplane.unload_model(request.match_info["name"], parameters.get("force") is True)
        return web.json_response({})


def _version(request: web.Request) -> int | None:
    return parse_version(request.match_info.get("version", ""))


def model_metadata(manifest: Manifest, versions: list[int]) -> dict[str, Any]:
    """KServe's model metadata (shapes with the batch and time axes as -1; state outputs last) and, as
    `parameters`, what the page needs: streamable, description, output labels."""
    def tensor(name: str, dtype: str, shape: list[int]) -> dict[str, Any]:
        return {"name": name, "datatype": codec.of_numpy(dtype).kserve, "shape": shape}

    features = manifest.input
    outputs = [tensor(out.name, out.dtype, [VARIABLE, VARIABLE, out.size]) for out in manifest.outputs]
    outputs += [tensor(pair.output, pair.dtype, [VARIABLE, *pair.shape]) for pair in manifest.state]
    return {
        "name": manifest.name,
        "versions": [str(v) for v in versions],
        "platform": PLATFORM,
        "inputs": [tensor(features.name, features.dtype, [VARIABLE, VARIABLE, features.features])],
        "outputs": outputs,
        "parameters": {"streamable": manifest.streamable, "description": manifest.description,
                       "labels": {out.name: out.labels for out in manifest.outputs if out.labels}},
    }


async def _object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body ({} when empty)."""
    body = await request.read()
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise InvalidInput("the request body must be a JSON object")
    return value
