// One WebSocket to /v2/models/{name}/stream is one session (docs/web.md). Text frames carry the native
// StreamRequest / StreamResponse messages in protobuf's canonical JSON, binary frames the same messages serialized
// (`binary: true`); every request is answered in order by a response echoing its `seq`. The token travels in the
// WebSocket subprotocol list, never in the URL.

import { encodeTensor, decodeTensor } from "./tensors.js";
import { encodeRequest, decodeResponse } from "./proto.js";

export const PROTOCOL = "seqserve.v1";
const WINDOW = 8;  // requests in flight; later ones wait in order in the outbox: the socket never buffers unbounded

export function tokenProtocol(token) {
  // A subprotocol must be an HTTP token: the bearer token travels base64url-encoded (no padding).
  const bytes = new TextEncoder().encode(token);
  return "seqserve.token." + btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function streamUrl(model, where = window.location) {
  const scheme = where.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${where.host}/v2/models/${encodeURIComponent(model)}/stream`;
}

export class Session {
  // Opens the socket and the session; resolves with the Session once `opened` arrived.
  static async open(model, { token = "", binary = false, url = streamUrl(model) } = {}) {
    const protocols = token ? [PROTOCOL, tokenProtocol(token)] : [PROTOCOL];
    const socket = new WebSocket(url, protocols);
    socket.binaryType = "arraybuffer";
    const session = new Session(socket, binary);
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = () => reject(new Error(`cannot connect to ${url}`));
      socket.onclose = (event) => reject(new Error(closeText(event)));
    });
    session._listen();
    const opened = await session._request({ open: { model } });
    session.opened = opened.opened;
    return session;
  }

  constructor(socket, binary) {
    this.socket = socket;
    this.binary = binary;
    this.seq = 0;
    this.waiting = new Map();  // seq -> {resolve, reject}, the requests sent and not yet answered
    this.outbox = [];          // requests not sent yet, in order
    this.closed = null;
    this.done = new Promise((resolve) => { this._finish = resolve; });
  }

  // Sends one chunk (rows x features numbers); resolves with {output name: {shape, values}} or rejects with the
  // in-stream error (the session survives it). Chunks go out in call order, WINDOW at most unanswered.
  async chunk(values, shape, dtype = "DATA_TYPE_FLOAT32") {
    const answer = await this._request({ chunk: { input: encodeTensor(values, shape, dtype) } });
    const outputs = {};
    for (const [name, tensor] of Object.entries(answer.result.outputs || {})) outputs[name] = decodeTensor(tensor);
    return outputs;
  }

  // Ends the session once every chunk was answered: the server then closes the socket. Resolves on close.
  async end() {
    await Promise.allSettled([...this.waiting.values(), ...this.outbox].map((r) => r.answered));
    if (!this.closed) this._send({ seq: ++this.seq, end: {} });
    return this.done;
  }

  _request(body) {
    if (this.closed) return Promise.reject(new Error(this.closed));
    const request = { body };
    request.answered = new Promise((resolve, reject) => Object.assign(request, { resolve, reject }));
    this.outbox.push(request);
    this._pump();
    return request.answered;
  }

  _pump() {
    while (this.outbox.length && this.waiting.size < WINDOW && !this.closed) {
      const request = this.outbox.shift();
      const seq = ++this.seq;
      this.waiting.set(seq, request);
      this._send({ seq, ...request.body });
    }
  }

  _send(message) {
    this.socket.send(this.binary ? encodeRequest(message) : JSON.stringify(message));
  }

  _listen() {
    this.socket.onmessage = (event) => {
      const message = typeof event.data === "string" ? JSON.parse(event.data) : decodeResponse(event.data);
      const seq = Number(message.seq || 0);
      const waiter = this.waiting.get(seq);
      if (!waiter) return;
      this.waiting.delete(seq);
      if (message.error) waiter.reject(new Error(`error ${message.error.code}: ${message.error.message}`));
      else waiter.resolve(message);
      this._pump();
    };
    this.socket.onclose = (event) => {
      this.closed = closeText(event);
      for (const waiter of [...this.waiting.values(), ...this.outbox.splice(0)]) waiter.reject(new Error(this.closed));
      this.waiting.clear();
      this._finish(event);
    };
  }
}

function closeText(event) {
  return `socket closed: ${event.code}${event.reason ? " " + event.reason : ""}`;
}
