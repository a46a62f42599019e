"""Real speech for the VAD tests: phrases spoken by espeak-ng (Debian package, installed by `make test`),
resampled to 16 kHz, with silences between them; where each phrase is, in seconds."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
PHRASES = ["the quick brown fox jumps over the lazy dog", "streaming voice activity detection",
           "one two three four five"]


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(phrase: str) -> np.ndarray:
    """One phrase as float32 16 kHz samples, the synthesiser's own leading and trailing silence trimmed."""
    wav = subprocess.run(["espeak-ng", "--stdout", "-s", "150", phrase], check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(wav), "rb") as f:
        rate = f.getframerate()
        # espeak-ng streams to stdout with an unknown length in the header: read every frame there is
        pcm = np.frombuffer(f.readframes(1 << 30), dtype="<i2").astype(np.float32) / 32768.0
    times = np.arange(round(len(pcm) * SAMPLE_RATE / rate)) / SAMPLE_RATE
    audio = np.interp(times, np.arange(len(pcm)) / rate, pcm).astype(np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.02)
    return audio[loud[0] : loud[-1] + 1]


def conversation(phrases: list[str] = PHRASES, gap_s: float = 1.0, seed: int = 0
                 ) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The phrases with `gap_s` of quiet noise before, between and after them; `(start_s, end_s)` of each."""
    rng = np.random.default_rng(seed)
    parts, spans, t = [], [], 0.0

    def quiet(seconds: float) -> np.ndarray:
        return (0.001 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)

    for phrase in phrases:
        parts.append(quiet(gap_s))
        t += gap_s
        spoken = speak(phrase)
        parts.append(spoken)
        spans.append((t, t + len(spoken) / SAMPLE_RATE))
        t += len(spoken) / SAMPLE_RATE
    parts.append(quiet(gap_s))
    return np.concatenate(parts), spans


def write_wav(path: Path, audio: np.ndarray) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
