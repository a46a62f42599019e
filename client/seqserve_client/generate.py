"""Text from a character-level language model served by seqserve (e.g. the shipped `zen_gru`), one character
per step over one `Stream`: the prompt goes in as one chunk of token ids `(time, 1)`, then every sampled
character is sent back alone and the next character's logits come back.

The model's first output must carry one label per token (its characters): `labels[id]` is the character of
token `id`, which is also how the prompt is encoded.
"""

from __future__ import annotations

import numpy as np

from seqserve_client.sync import Client

MODEL = "zen_gru"


def alphabet(client: Client, model: str) -> tuple[list[str], str]:
    """The model's characters (its first output's labels) and that output's name; `ValueError` if it has none."""
    info = client.model(model)
    out = info.outputs[0]
    if not out.labels or info.input.vocab_size != len(out.labels):
        raise ValueError(f"model {model!r} is not a character model: its first output has {len(out.labels)} labels "
                         f"for a vocabulary of {info.input.vocab_size}")
    return list(out.labels), out.tensor.name


def generate(client: Client, prompt: str, length: int, model: str = MODEL, temperature: float = 1.0,
             seed: int = 0) -> str:
    """`prompt` followed by `length` characters sampled at `temperature` (0: always the most likely one)."""
    chars, output = alphabet(client, model)
    unknown = sorted(set(prompt) - set(chars))
    if unknown or not prompt:
        raise ValueError(f"the prompt must be non-empty and use the model's characters; unknown: {unknown}")
    rng = np.random.default_rng(seed)
    ids = np.array([[chars.index(c)] for c in prompt], dtype=np.int64)  # (time, 1)
    text = prompt
    with client.stream(model) as stream:
        logits = stream.send(ids)[output][-1]  # (vocab,) after the last prompt character
        for _ in range(length):
            token = _sample(logits, temperature, rng)
            text += chars[token]
            logits = stream.send(np.array([[token]], dtype=np.int64))[output][-1]
    return text


def _sample(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))
