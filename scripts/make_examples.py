"""Writes the example inputs under examples/ (committed; a test checks they are what this script makes):

- `vowels.npy`: the first utterance of the JapaneseVowels test set, `(time, 12)` float32 (speaker_1);
- `speech.wav`: three phrases spoken by espeak-ng, 16 kHz mono 16-bit, one second of quiet between them.

    .venv/bin/python scripts/make_examples.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.service.speech import conversation, write_wav  # noqa: E402
from training.data import VOWELS_TEST, load_ts  # noqa: E402

EXAMPLES = ROOT / "examples"


def vowels_utterance() -> tuple[np.ndarray, str]:
    data = load_ts(VOWELS_TEST)
    return data.sequences[0].astype(np.float32), data.classes[int(data.labels[0])]


def main() -> None:
    EXAMPLES.mkdir(exist_ok=True)
    x, speaker = vowels_utterance()
    np.save(EXAMPLES / "vowels.npy", x)
    audio, spans = conversation()
    write_wav(EXAMPLES / "speech.wav", audio)
    print(f"examples/vowels.npy {x.shape} (speaker {speaker}); examples/speech.wav {len(audio) / 16000:.2f} s, "
          f"phrases at {[(round(a, 2), round(b, 2)) for a, b in spans]}")


if __name__ == "__main__":
    main()
