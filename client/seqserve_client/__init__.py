"""seqserve client SDK: numpy in, numpy out, over the native gRPC API.

    with Client("127.0.0.1:8001") as client, client.stream("vowels_lstm") as stream:
        outputs = stream.send(chunk)          # chunk (time, features) -> {"logits": (time, size)}

`AsyncClient` is the asyncio flavour with the same methods (awaitable). Every server error surfaces as
`ServerError` carrying the gRPC status code (and, for in-stream errors, the chunk's sequence number).
`security=Security(ca=..., cert=..., key=..., token=...)` reaches a server with TLS, mTLS or authentication.
"""

from seqserve_client.aio import AsyncClient, AsyncStream
from seqserve_client.common import ServerError
from seqserve_client.security import Security
from seqserve_client.sync import Client, Stream

__all__ = ["AsyncClient", "AsyncStream", "Client", "Security", "ServerError", "Stream"]
