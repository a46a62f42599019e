// Uploaded files -> arrays, parsed here in the page: NumPy's .npy (format 1.0-3.0, C order, little-endian
// float32/float64/int32/int64 and 8/16-bit ints) and WAV (PCM 16-bit or IEEE float32, any rate and channel count).

import { resampleAll } from "./resample.js";

export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = String.fromCharCode(...bytes.subarray(0, 6));
  if (magic !== "\x93NUMPY") throw new Error("not a .npy file (no \\x93NUMPY magic)");
  const major = bytes[6];
  const view = new DataView(buffer);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(bytes.subarray(start, start + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header);
  const order = /'fortran_order':\s*(True|False)/.exec(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !order || !shapeText) throw new Error(`unreadable .npy header: ${header}`);
  if (order[1] === "True") throw new Error(".npy in Fortran order: save it with C order");
  const shape = shapeText[1].split(",").map((s) => s.trim()).filter((s) => s).map(Number);
  const readers = {
    "<f4": [4, (o) => view.getFloat32(o, true)], "<f8": [8, (o) => view.getFloat64(o, true)],
    "<i4": [4, (o) => view.getInt32(o, true)], "<i8": [8, (o) => Number(view.getBigInt64(o, true))],
    "<i2": [2, (o) => view.getInt16(o, true)], "|i1": [1, (o) => view.getInt8(o)], "|u1": [1, (o) => view.getUint8(o)],
  };
  const reader = readers[descr[1]];
  if (!reader) throw new Error(`.npy dtype ${descr[1]} is not supported (float32/64, int8/16/32/64, uint8)`);
  const [size, read] = reader;
  const count = shape.reduce((a, b) => a * b, 1);
  const offset = start + headerLength;
  if (offset + count * size > buffer.byteLength) throw new Error(".npy file is shorter than its shape says");
  const values = new Float64Array(count);
  for (let k = 0; k < count; k++) values[k] = read(offset + k * size);
  return { shape, values, dtype: descr[1] };
}

// {rate, samples: Float32Array}: the channels' mean; 16-bit samples / 32768, as the Python client reads them.
export function parseWav(buffer) {
  const view = new DataView(buffer);
  const tag = (o) => String.fromCharCode(...new Uint8Array(buffer, o, 4));
  if (buffer.byteLength < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") throw new Error("not a WAV file");
  let format = null;
  for (let o = 12; o + 8 <= buffer.byteLength; ) {
    const id = tag(o);
    const size = view.getUint32(o + 4, true);
    if (id === "fmt ") {
      format = { code: view.getUint16(o + 8, true), channels: view.getUint16(o + 10, true),
        rate: view.getUint32(o + 12, true), bits: view.getUint16(o + 22, true) };
      if (format.code === 0xfffe && size >= 26) format.code = view.getUint16(o + 32, true);  // WAVE_FORMAT_EXTENSIBLE
    } else if (id === "data") {
      if (!format) throw new Error("WAV data before its fmt chunk");
      return { rate: format.rate, samples: samples(view, o + 8, Math.min(size, buffer.byteLength - o - 8), format) };
    }
    o += 8 + size + (size % 2);
  }
  throw new Error("WAV file without a data chunk");
}

function samples(view, offset, size, { code, channels, bits }) {
  let read;
  if (code === 1 && bits === 16) read = (o) => view.getInt16(o, true) / 32768;
  else if (code === 3 && bits === 32) read = (o) => view.getFloat32(o, true);
  else throw new Error(`WAV format ${code} with ${bits}-bit samples: use 16-bit PCM or 32-bit float`);
  const width = bits / 8;
  const count = Math.floor(size / (width * channels));
  const out = new Float32Array(count);
  for (let k = 0; k < count; k++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += read(offset + (k * channels + c) * width);
    out[k] = sum / channels;
  }
  return out;
}

// The file as (steps, features) rows: a WAV is cut into frames (resampled to the model's rate), a .npy is
// (steps, features), (1, steps, features) or, for one feature, (steps,).
export async function rowsOfFile(file, model) {
  const buffer = await file.arrayBuffer();
  const features = model.input.features;
  if (/\.wav$/i.test(file.name)) {
    const { rate, samples } = parseWav(buffer);
    const audio = model.sampleRate ? resampleAll(samples, rate, model.sampleRate) : samples;
    const padded = new Float32Array(Math.ceil(audio.length / features) * features);
    padded.set(audio);  // the last frame padded with silence, as the Python client does
    return { values: padded, steps: padded.length / features };
  }
  const { shape, values } = parseNpy(buffer);
  const dims = shape.length === 3 && shape[0] === 1 ? shape.slice(1) : shape.length === 1 ? [shape[0], 1] : shape;
  if (dims.length !== 2 || dims[1] !== features) {
    throw new Error(`${file.name}: shape [${shape}], the model wants (steps, ${features})`);
  }
  return { values, steps: dims[0] };
}
