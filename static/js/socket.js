// WebSocket client for /ws (protocol in docs/protocol.md): start, binary PCM, stop.
// Used by the Live page. Server messages are dispatched by "type" to handlers.

export class StreamClient {
  constructor(handlers = {}) {
    this.handlers = handlers;
    this.ws = null;
    this.ready = false;
  }

  // Open the socket and send "start"; resolves on "ready", rejects on a fatal error or close.
  connect({ sampleRate, format = "f32le", channels = 1, source = "browser" }) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.ws = new WebSocket(`${scheme}://${location.host}/ws`);
    this.ws.binaryType = "arraybuffer";
    return new Promise((resolve, reject) => {
      this.ws.addEventListener("open", () => {
        this.ws.send(JSON.stringify({ type: "start", sample_rate: sampleRate, format, channels, source }));
      });
      this.ws.addEventListener("message", (event) => {
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch (_) {
          return;
        }
        if (msg.type === "ready") {
          this.ready = true;
          resolve(msg);
        } else if (msg.type === "error" && !this.ready) {
          reject(new Error(msg.message));
        }
        const handler = this.handlers[msg.type];
        if (handler) handler(msg);
      });
      this.ws.addEventListener("close", (event) => {
        this.ready = false;
        if (this.handlers.close) this.handlers.close(event);
        reject(new Error(event.reason || `connection closed (${event.code})`));
      });
    });
  }

  send(buffer) {
    // Audio that cannot be sent now is not worth queueing: the server wants live audio.
    if (this.ready && this.ws.readyState === WebSocket.OPEN && this.ws.bufferedAmount < 1 << 20) {
      this.ws.send(buffer);
    }
  }

  stop() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "stop" }));
  }

  close() {
    if (this.ws) this.ws.close();
  }
}
