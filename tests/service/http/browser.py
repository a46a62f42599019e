"""Headless Chromium driven over the DevTools protocol (CDP) with aiohttp's WebSocket client: no WebDriver, no
downloaded browser, no network. Debian's `chromium` (what `make test` installs) is started with
`--remote-debugging-port=0`; the port it picked is read from the line it prints on stderr.

    async with Chromium.start(fake_audio=wav) as browser:
        page = await browser.open("http://127.0.0.1:8000/")
        value = await page.evaluate("window.seqservePage.ready.then(() => 1)")   # awaits the page's own promise
        await page.screenshot(path)

Waiting is always on an event (a CDP answer, a page-side promise); the timeouts are safety nets against a hung
browser, never a synchronisation.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

SAFETY_NET_S = 120.0


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class PageError(AssertionError):
    """A script on the page threw or a promise it returned rejected."""


class Page:
    """One tab: commands by id over its own CDP WebSocket; console lines and uncaught errors are kept for reports."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self.console: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._socket:
            data = json.loads(message.data)
            if "id" in data:
                future = self._answers.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
                continue
            method, params = data.get("method", ""), data.get("params", {})
            if method == "Runtime.consoleAPICalled":
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                self.console.append("uncaught: " + _describe(params["exceptionDetails"]))
            for future in self._events.pop(method, []):
                if not future.done():
                    future.set_result(params)
        for future in self._answers.values():
            future.set_exception(ConnectionError("the browser closed the DevTools socket"))

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        answer = self._answers[ident] = asyncio.get_running_loop().create_future()
        await self._socket.send_json({"id": ident, "method": method, "params": params})
        data = await asyncio.wait_for(answer, SAFETY_NET_S)
        if "error" in data:
            raise RuntimeError(f"{method}: {data['error']}")
        return data["result"]  # type: ignore[no-any-return]

    def event(self, method: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the next `method` event (ask before causing it)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._events.setdefault(method, []).append(future)
        return future

    async def navigate(self, url: str) -> None:
        loaded = self.event("Page.loadEventFired")
        result = await self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise RuntimeError(f"cannot load {url}: {result['errorText']}")
        await asyncio.wait_for(loaded, SAFETY_NET_S)

    async def evaluate(self, expression: str, timeout: float = SAFETY_NET_S) -> Any:
        """The JSON value of `expression`, awaited when it is a promise; PageError when it throws or rejects."""
        result = await asyncio.wait_for(self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True, timeout=timeout * 1000),
            timeout + 10)
        if "exceptionDetails" in result:
            raise PageError(f"{expression}: {_describe(result['exceptionDetails'])}; console: {self.console[-10:]}")
        return result["result"].get("value")

    async def set_files(self, selector: str, paths: list[Path]) -> None:
        """Chooses files in an <input type=file>, as a user would (fires its change event)."""
        document = await self.call("DOM.getDocument")
        node = await self.call("DOM.querySelector", nodeId=document["root"]["nodeId"], selector=selector)
        await self.call("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[str(p) for p in paths])

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


def _describe(details: dict[str, Any]) -> str:
    exception = details.get("exception", {})
    return str(exception.get("description") or exception.get("value") or details.get("text"))


class Chromium:
    def __init__(self, process: asyncio.subprocess.Process, port: int, session: aiohttp.ClientSession) -> None:
        self._process, self._port, self._session = process, port, session

    @classmethod
    @asynccontextmanager
    async def start(cls, fake_audio: Path | None = None, flags: tuple[str, ...] = ()) -> AsyncIterator[Chromium]:
        """Chromium headless with a fake microphone playing `fake_audio` once (then silence), offline."""
        binary = chromium_binary()
        if binary is None:
            raise FileNotFoundError("chromium is not installed")
        with tempfile.TemporaryDirectory(prefix="seqserve-chromium-") as profile:
            audio = [f"--use-file-for-fake-audio-capture={fake_audio}%noloop"] if fake_audio else []
            process = await asyncio.create_subprocess_exec(
                binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
                f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check", "--mute-audio",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--window-size=1000,720", "--autoplay-policy=no-user-gesture-required",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", *audio, *flags,
                "about:blank", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE)
            try:
                port = await asyncio.wait_for(_devtools_port(process), SAFETY_NET_S)
                async with aiohttp.ClientSession() as session:
                    yield cls(process, port, session)
            finally:
                if process.returncode is None:
                    process.terminate()
                await process.wait()

    @asynccontextmanager
    async def open(self, url: str) -> AsyncIterator[Page]:
        """A new tab on `url`, loaded (its load event fired)."""
        async with self._session.put(f"http://127.0.0.1:{self._port}/json/new?about:blank") as response:
            target = await response.json()
        async with self._session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as socket:
            page = Page(socket)
            for domain in ("Page", "Runtime"):
                await page.call(f"{domain}.enable")
            await page.navigate(url)
            yield page


async def _devtools_port(process: asyncio.subprocess.Process) -> int:
    assert process.stderr is not None
    seen = []
    while line := (await process.stderr.readline()).decode(errors="replace"):
        if line.startswith("DevTools listening on ws://"):
            _DRAINS.add(asyncio.create_task(_drain(process.stderr)))  # keep the pipe from filling up
            return int(line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
        seen.append(line.rstrip())
    raise RuntimeError("chromium exited before opening DevTools: " + " | ".join(seen[-10:]))


_DRAINS: set[asyncio.Task[None]] = set()


async def _drain(stream: asyncio.StreamReader) -> None:
    try:
        while await stream.read(65536):
            pass
    finally:
        _DRAINS.discard(asyncio.current_task())  # type: ignore[arg-type]
