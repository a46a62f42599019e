"""The web front (docs/web.md): KServe v2 REST, WebSocket streams and the page, on aiohttp, on gRPC's event loop."""
