"""The page's own modules, run in chromium on the files the server ships (service/http/static/): its resampler is the
`vad` client's `read_wav` to the bit at every common rate, whole or streamed in any blocks, and its .npy and WAV
parsers read what NumPy and the `wave` module write."""

from __future__ import annotations

import base64
import io
import json
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from seqserve_client.vad import read_wav
from service.http.app import STATIC
from tests.service.http.browser import Chromium, Page, chromium_binary

pytestmark = pytest.mark.skipif(chromium_binary() is None, reason="chromium is not installed (make test installs it "
                                "with scripts/ensure-package.sh where it is root with apt-get)")


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    """A blank page of the static folder, served as the server serves it (the modules import each other)."""
    async def blank(_: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>modules</title>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", blank)
    app.router.add_static("/", STATIC)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with Chromium.start() as browser, browser.open(f"http://127.0.0.1:{port}/") as opened:
            yield opened
    finally:
        await runner.cleanup()


def b64(array: np.ndarray) -> str:
    return base64.b64encode(array.astype("<f4").tobytes()).decode()


def floats(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), "<f4")


def wav_bytes(pcm: np.ndarray, rate: int, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.astype("<i2").tobytes())
    return out.getvalue()


RESAMPLE = """(async () => {
  const { LinearResampler, resampleAll } = await import("/resample.js");
  const { toBase64, fromBase64 } = await import("/tensors.js");
  const bytes = fromBase64(%(audio)s);
  const x = new Float32Array(bytes.buffer);
  const streamed = [];
  const resampler = new LinearResampler(%(rate)d, 16000);
  for (let k = 0, n = 0; k < x.length; k += n) {
    n = [128, 441, 1, 4096, 7][streamed.length %% 5];
    streamed.push(...resampler.push(x.subarray(k, k + n)));
  }
  const whole = resampleAll(x, %(rate)d, 16000);
  return [toBase64(new Uint8Array(whole.buffer)), toBase64(new Uint8Array(Float32Array.from(streamed).buffer))];
})()"""


async def test_the_resampler_is_read_wavs_to_the_bit(page: Page, tmp_path: Path) -> None:
    for rate in (8000, 11025, 16000, 22050, 44100, 48000):
        pcm = np.random.default_rng(rate).integers(-32768, 32768, 2 * rate + 13)
        (tmp_path / "x.wav").write_bytes(wav_bytes(pcm, rate))
        want = read_wav(tmp_path / "x.wav")
        whole, streamed = await page.evaluate(RESAMPLE % {"audio": json.dumps(b64(pcm / 32768.0)), "rate": rate})
        assert np.array_equal(floats(whole), want), rate
        streamed_audio = floats(streamed)  # a stream has no end: its last samples wait for their right neighbours
        overlap = min(len(streamed_audio), len(want))
        assert abs(len(streamed_audio) - len(want)) <= 2, (rate, len(streamed_audio), len(want))
        assert np.array_equal(streamed_audio[:overlap], want[:overlap]), rate


PARSE = """(async () => {
  const { parseNpy, parseWav } = await import("/files.js");
  const { fromBase64 } = await import("/tensors.js");
  const buffer = (text) => fromBase64(text).buffer;
  const npy = %(npy)s.map((text) => { const { shape, values } = parseNpy(buffer(text)); return [shape, [...values]]; });
  const { rate, samples } = parseWav(buffer(%(wav)s));
  return { npy, rate, samples: [...samples] };
})()"""


async def test_npy_and_wav_files_are_read_as_numpy_and_wave_write_them(page: Page) -> None:
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal((19, 12)).astype("<f4"), rng.standard_normal((1, 3, 2)),
              rng.integers(-(2**40), 2**40, 7), rng.integers(-100, 100, (2, 5)).astype("<i4")]
    files = []
    for array in arrays:
        out = io.BytesIO()
        np.save(out, array)
        files.append(base64.b64encode(out.getvalue()).decode())
    stereo = rng.integers(-32768, 32768, (1000, 2))
    got = await page.evaluate(PARSE % {"npy": json.dumps(files),
                                       "wav": json.dumps(base64.b64encode(wav_bytes(stereo.reshape(-1), 22050, 2))
                                                         .decode())})
    for array, (shape, values) in zip(arrays, got["npy"], strict=True):
        assert shape == list(array.shape) and np.array_equal(np.array(values), array.reshape(-1).astype(np.float64))
    assert got["rate"] == 22050
    pcm = stereo / 32768.0  # read_wav's mean of the channels, before it resamples to 16 kHz
    np.testing.assert_allclose(got["samples"], pcm.mean(axis=1), atol=1e-7, rtol=0)
