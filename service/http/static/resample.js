// Linear resampling to the model's rate, the same rule as the Python client's `read_wav`: numpy's `np.interp` at the
// times j / outRate over the source grid i / inRate, in float64, stored as float32. Streamed (`push`) with exact
// integer positions, so audio cut into blocks anywhere gives the same samples as the whole array (`resampleAll`).
// When the rates are equal it is a plain copy (the bypass: the samples the model sees are the captured ones).

export class LinearResampler {
  constructor(inRate, outRate) {
    this.inRate = inRate;
    this.outRate = outRate;
    this.bypass = inRate === outRate;
    this.next = 0;     // index of the next output sample
    this.base = 0;     // source index of this.held[0]
    this.held = [];    // source samples still needed (at most two)
  }

  // Source samples in (any block size), the output samples they complete out.
  push(block) {
    if (this.bypass) return Float32Array.from(block);
    const source = this.held.concat(Array.from(block));
    const end = this.base + source.length;  // one past the last source index held
    const out = [];
    for (;;) {
      const [i, r] = position(this.next, this.inRate, this.outRate);
      if (i + (r > 0 ? 1 : 0) >= end) break;
      out.push(interpolate(source[i - this.base], source[i + 1 - this.base], i, this.next, this.inRate, this.outRate, r));
      this.next += 1;
    }
    const [keep] = position(this.next, this.inRate, this.outRate);
    const drop = Math.max(0, Math.min(keep - this.base, source.length));
    this.held = source.slice(drop);
    this.base += drop;
    return Float32Array.from(out);
  }
}

// A whole recording, as `read_wav` resamples it: round(n * outRate / inRate) samples (Python's round: half to
// even), times past the last source sample take its value (np.interp's right edge).
export function resampleAll(x, inRate, outRate) {
  if (inRate === outRate) return Float32Array.from(x);
  const length = roundHalfEven(x.length * outRate / inRate);
  const out = new Float32Array(length);
  for (let j = 0; j < length; j++) {
    const [i, r] = position(j, inRate, outRate);
    out[j] = i >= x.length - 1 ? x[x.length - 1] : interpolate(x[i], x[i + 1], i, j, inRate, outRate, r);
  }
  return out;
}

function position(j, inRate, outRate) {
  const scaled = j * inRate;  // exact: an integer below 2^53 for days of audio
  const i = Math.floor(scaled / outRate);
  return [i, scaled - i * outRate];
}

function interpolate(left, right, i, j, inRate, outRate, r) {
  if (r === 0) return left;  // np.interp returns fp[i] where x equals xp[i]
  const xi = i / inRate;
  const slope = (right - left) / ((i + 1) / inRate - xi);
  return slope * (j / outRate - xi) + left;
}

function roundHalfEven(v) {
  const floor = Math.floor(v);
  const diff = v - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}
