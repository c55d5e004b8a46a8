// AudioWorklet processor: microphone samples -> ~100 ms Float32 chunks for the main thread.
// It runs on the audio rendering thread, so it only copies: 128-sample render
// quanta are gathered into one buffer per chunk and posted (transferred, not
// copied) to live.js, which sends them over the WebSocket as f32le PCM.

class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const chunkSeconds = (options.processorOptions && options.processorOptions.chunkSeconds) || 0.1;
    this.size = Math.max(128, Math.round(sampleRate * chunkSeconds));
    this.buffer = new Float32Array(this.size);
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0) {
      const channel = input[0]; // mono: the first channel is enough for recognition
      let offset = 0;
      while (offset < channel.length) {
        const n = Math.min(channel.length - offset, this.size - this.filled);
        this.buffer.set(channel.subarray(offset, offset + n), this.filled);
        this.filled += n;
        offset += n;
        if (this.filled === this.size) {
          this.port.postMessage(this.buffer.buffer, [this.buffer.buffer]);
          this.buffer = new Float32Array(this.size);
          this.filled = 0;
        }
      }
    }
    return true; // keep running while the node is connected
  }
}

registerProcessor("pcm-capture", PcmCapture);
