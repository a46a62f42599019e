"""`service.client`: the seqserve client SDK under the server's name, kept as a public interface.

The SDK, its CLI and the tensor codec live in the `seqserve-client` package (`client/`, import `seqserve_client`),
which installs alone (grpcio, protobuf, numpy); this shim re-exports it, and `python -m service.client` runs its CLI.
"""

from seqserve_client import AsyncClient, AsyncStream, Client, Security, ServerError, Stream

__all__ = ["AsyncClient", "AsyncStream", "Client", "Security", "ServerError", "Stream"]
