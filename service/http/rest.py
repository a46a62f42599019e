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
        body = await request.read()
        ready_only = False
        if body.strip():
            try:
                ready_only = json.loads(body).get("ready") is True
            except (ValueError, AttributeError, RecursionError):
                raise InvalidInput("the request body must be a JSON object such as {\"ready\": true}") from None
        rows = sorted(self._dataplane.statuses(), key=lambda s: (s.name, s.version))
        return web.json_response([{"name": s.name, "version": str(s.version), "state": s.state, "reason": s.reason}
                                  for s in rows if s.ready or not ready_only])


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
