// The microphone's AudioWorklet: mixes the channels down (their mean, as `read_wav` does), drops the capture
// pipeline's leading digital silence (exact zeros before the first real sample: no microphone produces them), resamples
// linearly to the model's rate (no resampling when the context already runs at it) and posts whole frames
// (Float32Array of `frame` samples) to the page.
import { LinearResampler } from "./resample.js";

class FrameCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { rate, frame } = options.processorOptions;
    this.resampler = new LinearResampler(sampleRate, rate);
    this.size = frame;
    this.frame = new Float32Array(frame);
    this.filled = 0;
    this.started = false;
    this.skipped = 0;  // leading zeros dropped
    this.running = true;
    this.port.onmessage = (event) => { if (event.data === "stop") this.running = false; };
  }

  process(inputs) {
    const channels = inputs[0];
    if (!this.running) return false;
    if (!channels || channels.length === 0) return true;
    const mixed = new Float32Array(channels[0].length);
    for (let k = 0; k < mixed.length; k++) {
      let sum = 0;
      for (const channel of channels) sum += channel[k];
      mixed[k] = sum / channels.length;
    }
    let begin = 0;
    if (!this.started) {
      while (begin < mixed.length && mixed[begin] === 0) begin++;
      this.skipped += begin;
      if (begin === mixed.length) return true;
      this.started = true;
      this.port.postMessage({ started: true, skipped: this.skipped, sampleRate });
    }
    for (const sample of this.resampler.push(mixed.subarray(begin))) {
      this.frame[this.filled++] = sample;
      if (this.filled === this.size) {
        this.port.postMessage({ frame: this.frame }, [this.frame.buffer]);  // transferred: detached here
        this.frame = new Float32Array(this.size);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("frame-capture", FrameCapture);
