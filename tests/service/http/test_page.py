"""The page (service/http/static/) in a real browser: Debian's chromium headless, driven over DevTools, loads it from
the real server and streams through the real WebSocket front; its results are checked against the gRPC clients.

- Microphone: chromium's fake microphone plays examples/speech.wav (as a float WAV at the fake device's own rate, so
  the browser passes the samples through untouched); the page resamples to 16 kHz with the same linear rule as the
  `vad` client's `read_wav`, streams 512-sample frames, and must find the same frames, the same probabilities
  (within 1e-5) and the same segments as the gRPC `vad` client given the same audio. Its screenshot is the README's.
- Upload, over TLS with a token: speech.wav (16 kHz: no resampling) gives the vad client's probabilities and segments;
  a wrong token is refused. A .npy for a classifier gives the gRPC stream's outputs per step.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import struct
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from seqserve_client import Client, Security
from seqserve_client.vad import frame_probabilities, frames_of, read_wav, speech_segments
from service.settings import Settings
from tests.service.grpc.certs import Certs, make_certs
from tests.service.grpc.helpers import RunningServer, run_in_thread
from tests.service.http.browser import Chromium, Page, PageError, chromium_binary

pytestmark = pytest.mark.skipif(chromium_binary() is None, reason="chromium is not installed (make test installs it "
                                "with scripts/ensure-package.sh where it is root with apt-get)")

TOLERANCE = 1e-5
FRAME = 512
ATTEMPTS = 3  # captures, when chromium's real-time audio drops samples (see dropout)
GAP = 64  # exact zeros in a row: silence the browser played, not the file's
LEAD_S, TAIL_S = 1.0, 0.25  # digital silence before (the page drops it) and after the speech (its last frames)
TOKEN = "page-test/token+=1"  # characters a WebSocket subprotocol cannot carry as they are
NARROW = "narrow-token"  # may use vowels_lstm only
SCREENSHOT = Path("docs/images/page.png")


@pytest.fixture
def start(tmp_path: Path, models_root: Path) -> Iterator[Callable[..., RunningServer]]:
    """A real server (gRPC + HTTP on free ports) over two of the shipped models."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("silero_vad", "vowels_lstm"):
        (models / name).symlink_to(models_root / name)
    started: list[RunningServer] = []

    def start(**overrides: Any) -> RunningServer:
        started.append(run_in_thread(Settings(models=models, host="127.0.0.1", port=0, metrics_port=0, http_port=0,
                                              device="cpu", intra_op_threads=1, **overrides)))
        return started[-1]

    yield start
    for server in reversed(started):
        server.stop()


def page_url(server: RunningServer, fragment: str = "", scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.serving.http_port}/#{fragment}"


def write_float_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """A mono IEEE-float WAV: chromium's fake microphone plays it sample for sample at its own rate."""
    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def microphone_audio(folder: Path, speech: Path, rate: int) -> tuple[Path, Path]:
    """(what the vad client reads: speech.wav at `rate`, 16-bit, silence after; what the fake microphone plays: the
    same samples as float, silence before)."""
    with wave.open(str(speech), "rb") as f:
        pcm, source_rate = np.frombuffer(f.readframes(f.getnframes()), "<i2"), f.getframerate()
    times = np.arange(round(len(pcm) * rate / source_rate)) / rate
    copy = np.round(np.interp(times, np.arange(len(pcm)) / source_rate, pcm)).astype("<i2")
    copy = np.concatenate([copy, np.zeros(round(TAIL_S * rate), "<i2")])
    reference, played = folder / f"speech_{rate}.wav", folder / f"microphone_{rate}.wav"
    with wave.open(str(reference), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(copy.tobytes())
    write_float_wav(played, np.concatenate([np.zeros(round(LEAD_S * rate)), copy / 32768.0]), rate)
    return reference, played


async def device_rate(url: str) -> int:
    """The sample rate of chromium's fake microphone as the page opens it (without voice processing, which would
    run at its own rate), the same whatever file it plays."""
    async with Chromium.start() as browser, browser.open(url) as page:
        return int(await page.evaluate(
            "navigator.mediaDevices.getUserMedia({audio: {echoCancellation: false, noiseSuppression: false, "
            "autoGainControl: false, channelCount: 1}}).then(s => s.getAudioTracks()[0].getSettings().sampleRate)"))


async def ready(page: Page, model: str) -> None:
    await page.evaluate(f"window.seqservePage.ready.then(() => window.seqservePage.select({json.dumps(model)}))"
                        ".then(() => 1)")


def segments_on_page(result: dict[str, Any]) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in result["segments"]]


async def capture(url: str, played: Path, frames: int, shot: Path) -> tuple[dict[str, Any], np.ndarray]:
    """The page streams `frames` frames of the fake microphone: (its result, the audio it sent)."""
    async with Chromium.start(fake_audio=played) as browser, browser.open(url) as page:
        await ready(page, "silero_vad")
        await page.evaluate(f"window.seqservePage.startMicrophone({{frames: {frames}, keep: true}}).then(() => 1)")
        result = await page.evaluate("window.seqservePage.whenDone()")
        result["shown"] = await page.evaluate("[...document.querySelectorAll('#segments li')].map(li => "
                                              "[Number(li.dataset.start), Number(li.dataset.end)])")
        sent = np.frombuffer(base64.b64decode(await page.evaluate("window.seqservePage.sentAudio()")), "<f4")
        await page.screenshot(shot)
    return result, sent


def dropout(sent: np.ndarray, want: np.ndarray) -> bool:
    """Whether `sent` differs from `want` first by a run of exact zeros: chromium's real-time audio path missed a
    deadline on a busy machine and played silence (what a glitch looks like); any other difference is the page's."""
    first = int(np.argmax(sent != want))
    return bool(np.all(sent[first:first + GAP] == 0) and np.any(want[first:first + GAP] != 0))


async def test_the_page_finds_the_vad_clients_segments_in_the_microphone(
        start: Callable[..., RunningServer], tmp_path: Path, repo_root: Path) -> None:
    server = start()
    rate = await device_rate(page_url(server))
    reference, played = microphone_audio(tmp_path, repo_root / "examples" / "speech.wav", rate)
    audio = frames_of(read_wav(reference), FRAME).reshape(-1)
    with Client(server.target) as client:
        want = frame_probabilities(client, audio, chunk_frames=4)
        for attempts in range(1, ATTEMPTS + 1):  # noqa: B007 (reported below)
            result, sent = await capture(page_url(server), played, len(want), tmp_path / "page.png")
            assert result["error"] is None and result["frames"] == len(want), (result["error"], result["frames"])
            assert result["captureRate"] == rate, (result["captureRate"], rate)
            got = np.array(result["probabilities"], np.float32)
            # whatever the browser delivered: the server's numbers for the frames sent, the vad client's segments
            own = frame_probabilities(client, sent, chunk_frames=4)
            assert float(np.max(np.abs(got - own))) <= TOLERANCE
            assert segments_on_page(result) == speech_segments(got) == [tuple(s) for s in result["shown"]]
            if np.array_equal(sent, audio):
                break
            late = result["skippedSamples"] == 0  # the page began after the silence before the speech: a busy machine
            assert late or dropout(sent, audio), f"the page's audio is not the file's from {np.argmax(sent != audio)}"
        else:
            pytest.fail(f"chromium's audio path dropped samples or began late in each of {ATTEMPTS} attempts (a busy "
                        "machine?)")
    worst = float(np.max(np.abs(got - want)))
    assert worst <= TOLERANCE, worst
    segments = speech_segments(want)
    assert len(segments) >= 3 and segments_on_page(result) == segments
    keep_screenshot(tmp_path / "page.png", repo_root)
    print(f"microphone at {rate} Hz, attempt {attempts}: {len(want)} frames, the same audio sample for sample, "
          f"max abs diff {worst:.1e}, segments {segments}")


def keep_screenshot(shot: Path, repo_root: Path) -> None:
    """The README's picture: docs/images/page.png, rewritten only when the page looks different."""
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    target = repo_root / SCREENSHOT
    if not target.exists() or target.read_bytes() != shot.read_bytes():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)


def spki_hash(cert: Path) -> str:
    """What --ignore-certificate-errors-spki-list wants: base64 SHA-256 of the certificate's public key."""
    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    return base64.b64encode(hashlib.sha256(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
                            .digest()).decode()


async def test_over_tls_with_a_token_an_uploaded_wav_gives_the_vad_clients_numbers_in_binary_frames(
        start: Callable[..., RunningServer], tmp_path: Path, repo_root: Path) -> None:
    certs: Certs = make_certs(tmp_path / "certs")
    server = start(tls_cert=certs.server_cert, tls_key=certs.server_key,
                   auth_tokens=json.dumps({TOKEN: {"principal": "page"},
                                           NARROW: {"principal": "narrow", "models": ["vowels_lstm"]}}))
    speech = repo_root / "examples" / "speech.wav"
    with Client(server.target, security=Security(ca=certs.ca, token=TOKEN)) as client:
        want = frame_probabilities(client, read_wav(speech), chunk_frames=4)
    trust = (f"--ignore-certificate-errors-spki-list={spki_hash(certs.server_cert)}",)
    async with Chromium.start(flags=trust) as browser:
        async with browser.open(page_url(server, "token=wrong", "https")) as page:
            with pytest.raises(PageError, match="401"):
                await page.evaluate("window.seqservePage.ready")
        async with browser.open(page_url(server, f"framing=binary&token={quote(TOKEN, safe='')}", "https")) as page:
            assert "token" not in await page.evaluate("location.href")  # the page took it out of the address bar
            await ready(page, "silero_vad")
            await page.set_files("#file", [speech])
            result = await page.evaluate("window.seqservePage.whenDone()")
            refused = await page.evaluate(  # the page's socket with a token that may not use the model: 4007
                f'import("/stream.js").then(m => m.Session.open("silero_vad", {{token: "{NARROW}"}}))'
                '.then(() => "opened", e => e.message)')
    assert refused.startswith("socket closed: 4007"), refused
    assert result["error"] is None and result["frames"] == len(want), (result["error"], result["frames"])
    assert result["framing"] == "binary"
    worst = float(np.max(np.abs(np.array(result["probabilities"], np.float32) - want)))
    assert worst <= TOLERANCE, worst
    assert segments_on_page(result) == speech_segments(want)


async def test_an_uploaded_npy_gives_the_grpc_streams_outputs_per_step(
        start: Callable[..., RunningServer], tmp_path: Path, repo_root: Path) -> None:
    server = start()
    x = np.load(repo_root / "examples" / "vowels.npy")
    with Client(server.target) as client, client.stream("vowels_lstm") as stream:
        want = stream.send(x)["logits"]
    async with Chromium.start() as browser, browser.open(page_url(server)) as page:
        await ready(page, "vowels_lstm")
        await page.set_files("#file", [repo_root / "examples" / "vowels.npy"])
        result = await page.evaluate("window.seqservePage.whenDone()")
        summary = await page.evaluate("document.getElementById('summary').textContent")
    assert result["error"] is None and result["frames"] == len(x)
    np.testing.assert_allclose(np.array(result["outputs"]["logits"]), want, atol=TOLERANCE, rtol=0)
    assert summary.endswith(f"speaker_{int(np.argmax(want[-1])) + 1}")
