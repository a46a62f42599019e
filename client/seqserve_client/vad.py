"""Voice-activity detection over a served frame model (Silero VAD): a 16 kHz mono WAV in, speech segments out.

    with Client(target) as client:
        probs = frame_probabilities(client, read_wav("speech.wav"), chunk_frames=4)   # one per 512 samples
        for start, end in speech_segments(probs):  print(f"{start:.2f}s - {end:.2f}s")

The segmentation follows Silero's `get_speech_timestamps` defaults: speech starts at probability >= 0.5, ends
after 100 ms below 0.35, segments shorter than 250 ms are dropped.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from seqserve_client.sync import Client

MODEL = "silero_vad"
SAMPLE_RATE = 16000


def read_wav(path: Path) -> np.ndarray:
    """A mono 16-bit PCM WAV as float32 in [-1, 1], resampled (linear) to 16 kHz when it has another rate."""
    with wave.open(str(path), "rb") as f:
        if f.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * f.getsampwidth()}-bit samples")
        rate, channels = f.getframerate(), f.getnchannels()
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    audio = pcm.reshape(-1, channels).mean(axis=1)
    if rate != SAMPLE_RATE:
        times = np.arange(round(len(audio) * SAMPLE_RATE / rate)) / SAMPLE_RATE
        audio = np.interp(times, np.arange(len(audio)) / rate, audio).astype(np.float32)
    return audio


def frames_of(audio: np.ndarray, samples: int) -> np.ndarray:
    """`(frames, samples)`: the audio cut into frames, the last one padded with silence."""
    padded = np.pad(audio.astype(np.float32), (0, -len(audio) % samples))
    return padded.reshape(-1, samples)


def frame_probabilities(client: Client, audio: np.ndarray, chunk_frames: int = 4, model: str = MODEL) -> np.ndarray:
    """The model's first output for every frame, streaming `chunk_frames` frames per chunk (pipelined)."""
    info = client.model(model)
    samples, output = info.input.shape[-1], info.outputs[0].tensor.name
    frames = frames_of(audio, samples)
    with client.stream(model) as stream:
        sent = [stream.submit(frames[i : i + chunk_frames]) for i in range(0, len(frames), chunk_frames)]
        pieces = [stream.receive()[output] for _ in sent]
    return np.concatenate(pieces)[:, 0]


def speech_segments(probs: np.ndarray, frame_s: float = 512 / SAMPLE_RATE, threshold: float = 0.5,
                    min_speech_s: float = 0.25, min_silence_s: float = 0.1) -> list[tuple[float, float]]:
    """`(start_s, end_s)` of every speech segment in per-frame probabilities."""
    segments: list[tuple[float, float]] = []
    start: int | None = None
    below = 0
    for i, p in enumerate(probs):
        if start is None:
            if p >= threshold:
                start, below = i, 0
            continue
        below = below + 1 if p < threshold - 0.15 else 0
        if below * frame_s >= min_silence_s:
            segments.append((start * frame_s, (i - below + 1) * frame_s))
            start = None
    if start is not None:
        segments.append((start * frame_s, len(probs) * frame_s))
    return [(a, b) for a, b in segments if b - a >= min_speech_s]
