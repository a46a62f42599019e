// The microphone as whole frames at the model's rate: getUserMedia without the browser's voice processing (echo
// cancellation, noise suppression and gain control would change the samples), an AudioContext at the device's own
// rate (the browser resamples nothing), and the capture worklet (mix-down, linear resampling, framing).

export class Microphone {
  // onFrame(Float32Array) for every frame; onStart({skipped, sampleRate}) when the first real sample arrives.
  static async open({ rate, frame, onFrame, onStart = () => {} }) {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
    });
    const track = stream.getAudioTracks()[0];
    const deviceRate = track.getSettings().sampleRate;
    // "playback": the largest render quantum the browser offers, so a busy machine drops nothing (a VAD display
    // needs no lower latency than that)
    const context = new AudioContext({ latencyHint: "playback", ...(deviceRate ? { sampleRate: deviceRate } : {}) });
    await context.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url));
    const node = new AudioWorkletNode(context, "frame-capture", {
      numberOfOutputs: 0, processorOptions: { rate, frame },
    });
    node.port.onmessage = (event) => {
      if (event.data.frame) onFrame(event.data.frame);
      else if (event.data.started) onStart(event.data);
    };
    context.createMediaStreamSource(stream).connect(node);
    await context.resume();
    return new Microphone(stream, context, node);
  }

  constructor(stream, context, node) {
    this.stream = stream;
    this.context = context;
    this.node = node;
    this.rate = context.sampleRate;
  }

  async close() {
    this.node.port.postMessage("stop");
    this.stream.getTracks().forEach((track) => track.stop());
    await this.context.close();
  }
}
