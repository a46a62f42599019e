// Speech segments from per-frame probabilities: the Python `vad` client's rule (client/seqserve_client/vad.py), line for
// line, so the page and the client find the same segments in the same probabilities. Silero's defaults: speech
// starts at probability >= 0.5, ends after 100 ms below 0.35, segments shorter than 250 ms are dropped.

export function speechSegments(probs, frameS = 512 / 16000, threshold = 0.5, minSpeechS = 0.25, minSilenceS = 0.1) {
  const segments = [];
  let start = null;
  let below = 0;
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i];
    if (start === null) {
      if (p >= threshold) {
        start = i;
        below = 0;
      }
      continue;
    }
    below = p < threshold - 0.15 ? below + 1 : 0;
    if (below * frameS >= minSilenceS) {
      segments.push([start * frameS, (i - below + 1) * frameS]);
      start = null;
    }
  }
  if (start !== null) segments.push([start * frameS, probs.length * frameS]);
  return segments.filter(([a, b]) => b - a >= minSpeechS);
}
