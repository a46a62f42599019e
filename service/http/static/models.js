// The model list over the server's REST API (KServe v2 / Triton, docs/web.md): the repository index for the names,
// each model's metadata for its tensors. A token, when given, goes in the Authorization header.

import { KSERVE_DTYPES } from "./tensors.js";

const AUDIO_RATES = { silero_vad: 16000 };  // frame models fed from a microphone, and their sample rate

async function call(path, token, init = {}) {
  const headers = { ...(init.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { ...init, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${body.error || ""}`.trim());
  return body;
}

// [{name, version, ready, reason}] of every model in the repository.
export async function listModels(token) {
  const index = await call("/v2/repository/index", token, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
  });
  return index.map((m) => ({ name: m.name, version: m.version || "", ready: m.state === "READY",
    reason: m.reason || "" }));
}

// One model as the page needs it: {name, streamable, input: {name, features, dtype}, outputs: [{name, size,
// labels}], sampleRate (audio models), description}.
export async function describeModel(name, token) {
  const meta = await call(`/v2/models/${encodeURIComponent(name)}`, token);
  const parameters = meta.parameters || {};
  const input = meta.inputs[0];
  const outputs = meta.outputs.map((o) => ({
    name: o.name, size: Number(o.shape[o.shape.length - 1]),
    labels: (parameters.labels && parameters.labels[o.name]) || [],
  }));
  return {
    name, streamable: parameters.streamable !== false, description: parameters.description || "",
    input: { name: input.name, features: Number(input.shape[input.shape.length - 1]),
      dtype: KSERVE_DTYPES[input.datatype] || "DATA_TYPE_FLOAT32" },
    outputs, sampleRate: Number(parameters.sample_rate || AUDIO_RATES[name] || 0),
  };
}
