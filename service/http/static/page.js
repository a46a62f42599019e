// The page: pick a model; stream the microphone through a VAD model (live probability and speech segments) or
// upload a .npy / .wav for any streamable model (its outputs per step). Everything runs against this server: the
// REST API for the model list, the WebSocket /v2/models/{name}/stream for the session (docs/web.md).
//
// For tests and scripts the results are exposed as `window.seqserveResult` ({model, source, framing, frames,
// probabilities, outputs, segments, done, error, captureRate, skippedSamples}) and the segments also as <li data-start data-end> in #segments;
// `window.seqservePage` drives the page (select, startMicrophone, stop, streamFile, whenFrames, whenDone).

import { listModels, describeModel } from "./models.js";
import { Session } from "./stream.js";
import { Microphone } from "./microphone.js";
import { rowsOfFile } from "./files.js";
import { speechSegments } from "./vad.js";
import { drawVad, drawSteps } from "./plot.js";
import { toBase64 } from "./tensors.js";

const FILE_CHUNK = { audio: 4, steps: 16 };  // frames (steps) per chunk for uploads; the microphone sends each frame
const $ = (id) => document.getElementById(id);
const fragment = new URLSearchParams(window.location.hash.slice(1));
let model = null;   // describeModel() of the selected model
let run = null;     // {session, microphone, pending}
let waiters = [];   // [{test(result), resolve}]
let kept = [];      // the microphone's frames sent, when asked to keep them
let dirty = false;

if (fragment.get("token")) {
  $("token").value = fragment.get("token");
  fragment.delete("token");
  history.replaceState(null, "", `#${fragment}`);  // the token leaves the address bar (it never reached the server)
}
if (fragment.get("framing")) $("framing").value = fragment.get("framing");
const token = () => $("token").value.trim();
const connect = () => Session.open(model.name, { token: token(), binary: $("framing").value === "binary" });
const status = (text, bad = false) => { $("status").textContent = text; $("status").classList.toggle("bad", bad); };

const unit = () => (model && model.sampleRate ? "frames" : "steps");

function newResult(source) {
  window.seqserveResult = { model: model.name, source, frames: 0, probabilities: [], outputs: {}, segments: [],
    done: false, error: null, captureRate: 0, skippedSamples: 0, framing: $("framing").value };
  $("segments").replaceChildren();
  $("summary").textContent = "";
  dirty = true;
  return window.seqserveResult;
}

function settle() {
  const result = window.seqserveResult;
  waiters = waiters.filter((w) => (w.test(result) ? (w.resolve(result), false) : true));
}

function until(test) {
  return new Promise((resolve) => { waiters.push({ test, resolve }); settle(); });
}

// One chunk's answer appended to the result (frames in order: the server answers in order). The metadata may list
// state outputs too (after the model's own): only what the stream answers is kept.
function append(outputs) {
  const result = window.seqserveResult;
  for (const [name, { shape, values }] of Object.entries(outputs)) {
    const rows = result.outputs[name] || (result.outputs[name] = []);
    for (let t = 0; t < shape[0]; t++) rows.push(Array.from(values.subarray(t * shape[1], (t + 1) * shape[1])));
  }
  const first = outputs[model.outputs[0].name] || Object.values(outputs)[0];
  result.frames += first.shape[0];
  if (model.sampleRate) {
    for (let t = 0; t < first.shape[0]; t++) result.probabilities.push(first.values[t * first.shape[1]]);
    result.segments = speechSegments(result.probabilities, model.input.features / model.sampleRate);
  }
  dirty = true;
  settle();
}

function failed(error) {
  window.seqserveResult.error = String(error.message || error);
  status(window.seqserveResult.error, true);
  settle();
}

function draw() {
  if (dirty) render();
  requestAnimationFrame(draw);
}

function render() {
  const result = window.seqserveResult;
  if (!model || !result) return;
  dirty = false;
  if (model.sampleRate) {
    const live = result.source === "microphone" && !result.done;
    drawVad($("plot"), result.probabilities, result.segments, model.input.features / model.sampleRate, live ? 20 : 0);
    showSegments(result.segments);
  } else {
    const first = model.outputs[0];
    const rows = result.outputs[first.name] || [];
    drawSteps($("plot"), rows, first.labels);
    if (rows.length && first.labels.length) {
      const last = rows.at(-1);
      $("summary").textContent = `last step: ${first.labels[last.indexOf(Math.max(...last))]}`;
    }
  }
  $("frames").textContent = `${result.frames} ${unit()}`;
}

function showSegments(segments) {
  const list = $("segments");
  if (list.children.length === segments.length &&
      (!segments.length || list.lastChild.dataset.end === String(segments.at(-1)[1]))) return;
  list.replaceChildren(...segments.map(([a, b]) => {
    const item = document.createElement("li");
    item.dataset.start = String(a);
    item.dataset.end = String(b);
    item.textContent = `${a.toFixed(2)} s – ${b.toFixed(2)} s`;
    return item;
  }));
}

async function select(name) {
  await stop();
  $("model").value = name;
  model = await describeModel(name, token());
  $("microphone").hidden = !model.sampleRate;
  $("start").disabled = !model.streamable;
  $("file").disabled = !model.streamable;
  $("segments-box").hidden = !model.sampleRate;
  $("about").textContent = `${model.description} (input "${model.input.name}": ${model.input.features} features` +
    (model.sampleRate ? ` = one frame at ${model.sampleRate} Hz)` : " per step)") +
    (model.streamable ? "" : " — not streamable: it runs over Infer only");
  return model;
}

// Streams the microphone until stop() or, with `frames`, until that many frames were sent; `keep` keeps the
// frames sent (seqservePage.sentAudio(): base64 float32) for a test to check them.
async function startMicrophone({ frames = Infinity, keep = false } = {}) {
  await stop();
  const result = newResult("microphone");
  const session = await connect();
  const pending = new Set();
  let sent = 0;
  kept = [];
  run = { session, pending };
  run.microphone = await Microphone.open({
    rate: model.sampleRate, frame: model.input.features,
    onStart: (info) => { result.captureRate = info.sampleRate; result.skippedSamples = info.skipped; },
    onFrame: (frame) => {
      if (sent >= frames) return;
      if (keep) kept.push(frame);
      const answered = session.chunk(frame, [1, frame.length], model.input.dtype).then(append, failed);
      pending.add(answered);
      answered.finally(() => pending.delete(answered));
      if (++sent === frames) stop().catch(failed);
    },
  });
  result.captureRate = run.microphone.rate;
  status(`streaming the microphone (${run.microphone.rate} Hz captured, ${model.sampleRate} Hz sent)`);
  $("start").disabled = true;
  $("stop").disabled = false;
  return result;
}

// Stops the microphone, waits for the answers still due, ends the session.
async function stop() {
  const current = run;
  run = null;
  if (!current) return window.seqserveResult;
  if (current.microphone) await current.microphone.close();
  await Promise.allSettled([...current.pending]);
  await current.session.end();
  finish();
  return window.seqserveResult;
}

function finish() {
  window.seqserveResult.done = true;
  render();
  $("start").disabled = !model.streamable;
  $("stop").disabled = true;
  const r = window.seqserveResult;
  const from = r.source === "microphone" ? `the microphone (${r.captureRate} Hz, sent at ${model.sampleRate} Hz)`
    : "the file";
  if (!r.error) status(`done: ${r.frames} ${unit()} from ${from}, ${r.framing} frames`);
  settle();
}

async function streamFile(file) {
  await stop();
  const result = newResult("file");
  status(`streaming ${file.name}`);
  try {
    const { values, steps } = await rowsOfFile(file, model);
    const session = await connect();
    run = { session, pending: new Set() };
    const features = model.input.features;
    const per = model.sampleRate ? FILE_CHUNK.audio : FILE_CHUNK.steps;
    for (let t = 0; t < steps; t += per) {
      const rows = Math.min(per, steps - t);
      const sent = session.chunk(values.subarray(t * features, (t + rows) * features), [rows, features],
        model.input.dtype).then(append, failed);
      run.pending.add(sent);
    }
  } catch (error) {
    failed(error);
  }
  return stop().then(() => result);
}

async function start() {
  $("model").onchange = () => select($("model").value).catch(failed);
  $("start").onclick = () => startMicrophone().catch(failed);
  $("stop").onclick = () => stop().catch(failed);
  $("file").onchange = () => $("file").files[0] && streamFile($("file").files[0]).catch(failed);
  $("reload").onclick = () => load().catch((e) => status(String(e.message || e), true));
  requestAnimationFrame(draw);
  await load();
}

async function load() {
  const models = await listModels(token());
  $("model").replaceChildren(...models.map((m) => {
    const option = new Option(m.ready ? m.name : `${m.name} (${m.reason || "not ready"})`, m.name);
    option.disabled = !m.ready;
    return option;
  }));
  const wanted = fragment.get("model") || (models.find((m) => m.name === "silero_vad" && m.ready) || {}).name;
  const first = models.find((m) => m.name === wanted && m.ready) || models.find((m) => m.ready);
  if (first) await select(first.name);
  status(`${models.length} models`);
  return models;
}

window.seqservePage = {
  select, startMicrophone, stop, streamFile,
  whenFrames: (n) => until((r) => r.frames >= n || r.error),
  whenDone: () => until((r) => r.done),
  sentAudio: () => {
    const all = new Float32Array(kept.reduce((n, f) => n + f.length, 0));
    kept.reduce((offset, f) => (all.set(f, offset), offset + f.length), 0);
    return toBase64(new Uint8Array(all.buffer));
  },
  ready: start().catch((error) => { status(String(error.message || error), true); throw error; }),
};
