// Tensors as the native API carries them (dtype + shape + little-endian bytes), in the protobuf canonical JSON
// mapping of the WebSocket's text frames: {"dtype": "DATA_TYPE_FLOAT32", "shape": [4, 512], "data": "<base64>"}.

const DTYPES = {
  DATA_TYPE_FLOAT32: { size: 4, get: (v, o) => v.getFloat32(o, true), set: (v, o, x) => v.setFloat32(o, x, true) },
  DATA_TYPE_FLOAT64: { size: 8, get: (v, o) => v.getFloat64(o, true), set: (v, o, x) => v.setFloat64(o, x, true) },
  DATA_TYPE_FLOAT16: { size: 2, get: (v, o) => half(v.getUint16(o, true)), set: null },
  DATA_TYPE_INT32: { size: 4, get: (v, o) => v.getInt32(o, true), set: (v, o, x) => v.setInt32(o, x, true) },
  DATA_TYPE_INT64: {
    size: 8, get: (v, o) => Number(v.getBigInt64(o, true)), set: (v, o, x) => v.setBigInt64(o, BigInt(x), true),
  },
};

// The KServe names the REST metadata uses, mapped to the native ones.
export const KSERVE_DTYPES = { FP32: "DATA_TYPE_FLOAT32", FP64: "DATA_TYPE_FLOAT64", FP16: "DATA_TYPE_FLOAT16",
  INT32: "DATA_TYPE_INT32", INT64: "DATA_TYPE_INT64" };

// (rows, columns) numbers -> the JSON tensor. `values` is any array-like of rows * columns numbers, row-major.
export function encodeTensor(values, shape, dtype = "DATA_TYPE_FLOAT32") {
  const kind = DTYPES[dtype];
  if (!kind || !kind.set) throw new Error(`cannot send ${dtype} tensors`);
  const count = shape.reduce((a, b) => a * b, 1);
  if (values.length !== count) throw new Error(`${values.length} values for shape [${shape}]`);
  const bytes = new Uint8Array(count * kind.size);
  const view = new DataView(bytes.buffer);
  for (let k = 0; k < count; k++) kind.set(view, k * kind.size, values[k]);
  return { dtype, shape, data: toBase64(bytes) };
}

// The JSON tensor -> {shape, values: Float64Array} (int64 shapes arrive as strings in canonical JSON).
export function decodeTensor(tensor) {
  const dtype = tensor.dtype || "DATA_TYPE_UNSPECIFIED";
  const kind = DTYPES[dtype];
  if (!kind) throw new Error(`unknown dtype ${dtype}`);
  const shape = (tensor.shape || []).map(Number);
  const bytes = fromBase64(tensor.data || "");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values = new Float64Array(bytes.byteLength / kind.size);
  for (let k = 0; k < values.length; k++) values[k] = kind.get(view, k * kind.size);
  return { shape, values };
}

export function toBase64(bytes) {
  let text = "";
  for (let k = 0; k < bytes.length; k += 0x8000) text += String.fromCharCode(...bytes.subarray(k, k + 0x8000));
  return btoa(text);
}

export function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let k = 0; k < raw.length; k++) bytes[k] = raw.charCodeAt(k);
  return bytes;
}

function half(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}
