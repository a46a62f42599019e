// The WebSocket's binary frames: StreamRequest / StreamResponse (proto/seqserve/v1/seqserve.proto) as serialized
// protobuf, written and read here by hand for the few fields the page uses; a chunk's samples go out as raw bytes
// (no base64). Tensors are the same objects as in tensors.js, with `data` as base64 text, so both framings share
// the encoder and decoder of the tensors.

import { toBase64, fromBase64 } from "./tensors.js";

const DTYPE_NUMBERS = { DATA_TYPE_FLOAT32: 1, DATA_TYPE_FLOAT16: 2, DATA_TYPE_FLOAT64: 3, DATA_TYPE_INT32: 4,
  DATA_TYPE_INT64: 5 };
const DTYPE_NAMES = Object.fromEntries(Object.entries(DTYPE_NUMBERS).map(([name, n]) => [n, name]));

class Writer {
  constructor() { this.parts = []; }
  varint(value) {
    let v = BigInt.asUintN(64, BigInt(value));
    const bytes = [];
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v) byte |= 0x80;
      bytes.push(byte);
    } while (v);
    this.parts.push(Uint8Array.from(bytes));
    return this;
  }
  tag(field, wire) { return this.varint(field * 8 + wire); }
  uint(field, value) { return value ? this.tag(field, 0).varint(value) : this; }
  bytes(field, data) { this.tag(field, 2).varint(data.length); this.parts.push(data); return this; }
  string(field, text) { return text ? this.bytes(field, new TextEncoder().encode(text)) : this; }
  message(field, writer) { return this.bytes(field, writer.finish()); }
  finish() {
    const out = new Uint8Array(this.parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const part of this.parts) { out.set(part, offset); offset += part.length; }
    return out;
  }
}

// {field number: [values]}: varints as BigInt, length-delimited (and fixed) fields as Uint8Array.
function fields(bytes) {
  const found = {};
  let offset = 0;
  const varint = () => {
    let value = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const byte = bytes[offset++];
      if (byte === undefined) throw new Error("truncated protobuf message");
      value |= BigInt(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return value;
    }
  };
  while (offset < bytes.length) {
    const key = Number(varint());
    const [field, wire] = [key >> 3, key & 7];
    let value;
    if (wire === 0) value = varint();
    else if (wire === 2) {
      const length = Number(varint());
      value = bytes.subarray(offset, offset + length);
      offset += length;
    } else if (wire === 5) { value = bytes.subarray(offset, offset + 4); offset += 4; }
    else if (wire === 1) { value = bytes.subarray(offset, offset + 8); offset += 8; }
    else throw new Error(`protobuf wire type ${wire} is not expected here`);
    (found[field] || (found[field] = [])).push(value);
  }
  return found;
}

function tensorMessage(tensor) {
  const w = new Writer().uint(1, DTYPE_NUMBERS[tensor.dtype]);
  if (tensor.shape.length) {
    const shape = new Writer();
    tensor.shape.forEach((n) => shape.varint(n));
    w.message(2, shape);
  }
  return w.bytes(3, fromBase64(tensor.data));
}

function readTensor(bytes) {
  const f = fields(bytes);
  const shape = [];
  for (const packed of f[2] || []) {
    if (typeof packed === "bigint") shape.push(Number(BigInt.asIntN(64, packed)));
    else shape.push(...unpack(packed));
  }
  return { dtype: DTYPE_NAMES[Number((f[1] || [0n])[0])] || "DATA_TYPE_UNSPECIFIED", shape,
    data: toBase64(f[3] ? f[3].at(-1) : new Uint8Array(0)) };
}

function unpack(bytes) {
  const out = [];
  let value = 0n;
  let shift = 0n;
  for (const byte of bytes) {
    value |= BigInt(byte & 0x7f) << shift;
    shift += 7n;
    if (!(byte & 0x80)) { out.push(Number(BigInt.asIntN(64, value))); value = 0n; shift = 0n; }
  }
  return out;
}

const text = (bytes) => new TextDecoder().decode(bytes);

// The JSON-shaped request ({seq, open | chunk | end}) -> serialized StreamRequest.
export function encodeRequest(request) {
  const w = new Writer().uint(1, request.seq);
  if (request.open) w.message(2, new Writer().string(1, request.open.model).uint(2, request.open.version || 0));
  if (request.chunk) w.message(3, new Writer().message(1, tensorMessage(request.chunk.input)));
  if (request.reset) w.message(4, new Writer());
  if (request.end) w.message(5, new Writer());
  return w.finish();
}

// Serialized StreamResponse -> the JSON shape the text frames have ({seq, opened | result | error | reset}).
export function decodeResponse(buffer) {
  const f = fields(new Uint8Array(buffer));
  const response = { seq: Number((f[1] || [0n])[0]) };
  if (f[2]) {
    const o = fields(f[2].at(-1));
    response.opened = { model: o[1] ? text(o[1][0]) : "", version: Number((o[2] || [0n])[0]),
      provider: o[4] ? text(o[4][0]) : "", resumeToken: o[5] ? text(o[5][0]) : "" };
  }
  if (f[3]) {
    const outputs = {};
    for (const entry of fields(f[3].at(-1))[1] || []) {
      const e = fields(entry);
      outputs[text(e[1][0])] = readTensor(e[2] ? e[2][0] : new Uint8Array(0));
    }
    response.result = { outputs };
  }
  if (f[4]) {
    const e = fields(f[4].at(-1));
    response.error = { code: Number(BigInt.asIntN(32, (e[1] || [0n])[0])), message: e[2] ? text(e[2][0]) : "" };
  }
  if (f[5]) response.reset = {};
  return response;
}
