// Live page: microphone -> AudioWorklet -> f32le PCM over /ws -> matches, level, spectrogram, timeline.
import { el, fmtScore, fmtSeconds } from "./api.js";
import { alterationText } from "./evidence.js";
import { StreamClient } from "./socket.js";
import { titleLine, trackMetadata } from "./titles.js";

const $ = (id) => document.getElementById(id);
const startButton = $("start");
const stopButton = $("stop");
const statusNode = $("status");
const matchNode = $("current-match");
const scoreNode = $("current-score");
const candidatesNode = $("candidates");
const levelNode = $("level");
const canvas = $("spectrogram");
const timeline = $("timeline");
const playsBody = $("session-plays");
const titleNode = $("current-title"); // title and artist of the track shown as "Now playing", under its id
const evidenceNode = $("current-evidence"); // where in the track the play is, and how fast it runs
const MAX_TIMELINE_CELLS = 240; // two minutes at a 0.5 s hop

let audio = null; // { ctx, stream, worklet, analyser }
let client = null;
let drawing = 0;

function trackColour(name) {
  // A stable colour per track name, so the timeline shows runs of one track as one colour.
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
  return `hsl(${h}, 65%, 48%)`;
}

function setStatus(text, isError = false) {
  statusNode.textContent = text;
  statusNode.classList.toggle("error", isError);
}

// "Now playing" is the stream's answer (msg.stream, see docs/protocol.md): the play the stream decision holds
// through weak windows, named while it was heard in the last few seconds. One window's own answer flickers through
// a room; it stays visible in the score line, the candidates and the timeline.
function onWindow(msg) {
  const now = msg.stream;
  const matched = msg.match !== null;
  matchNode.textContent = now ? now.track : "no match";
  matchNode.classList.toggle("none", !now);
  matchNode.dataset.track = now ? now.track : "";
  showTitle(now ? now.track : null);
  evidenceNode.textContent = now ? playingText(now) : "";
  scoreNode.textContent = `this window: ${matched ? msg.match : "no match"} ${fmtScore(msg.score)}`
    + ` · ${fmtSeconds(msg.start_s)}–${fmtSeconds(msg.end_s)} s · ${Math.round(msg.latency_ms)} ms`;
  candidatesNode.replaceChildren(...msg.candidates.slice(0, 3).map(
    (c) => el("li", {}, `${c.track} `, el("span", { className: "score" }, fmtScore(c.score)))));
  const cell = el("span", {
    className: matched ? "cell hit" : "cell",
    title: `${fmtSeconds(msg.start_s)} s: ${matched ? msg.match : "no match"} (${fmtScore(msg.score)})`,
  });
  if (matched) cell.style.background = trackColour(msg.match);
  timeline.append(cell);
  while (timeline.childElementCount > MAX_TIMELINE_CELLS) timeline.firstElementChild.remove();
}

// "at 61.3 s of the track · ×1.040: 4.0 % fast, +0.68 st: speed". The time scale is the slope of the play's
// offset line; its pitch shift is re-measured every few seconds against the track's spectrum, and the two
// together name the kind of edit (speed, tempo, pitch). Until the pitch is measurable, "speed or tempo".
function playingText(now) {
  const parts = [];
  if (now.track_offset_s !== null) parts.push(`at ${fmtSeconds(now.track_offset_s)} s of the track`);
  if (now.time_scale !== null) {
    const pct = (now.time_scale - 1) * 100;
    let how = Math.abs(pct) < 0.5 ? "original timing" : `${Math.abs(pct).toFixed(1)} % ${pct > 0 ? "fast" : "slow"}`;
    if (now.pitch_semitones !== null && now.pitch_semitones !== undefined) {
      const st = Number(now.pitch_semitones);
      how += `, ${st >= 0 ? "+" : ""}${st.toFixed(2)} st`;
    }
    const kind = now.alteration && now.alteration !== "unknown" ? now.alteration : null;
    how += kind ? `: ${kind}` : (Math.abs(pct) < 0.5 ? "" : " (speed or tempo)");
    parts.push(`×${Number(now.time_scale).toFixed(3)}: ${how}`);
  }
  return parts.join(" · ");
}

async function showTitle(trackId) {
  if (!trackId) {
    titleNode.textContent = "";
    return;
  }
  const line = titleLine(await trackMetadata(trackId));
  if (matchNode.dataset.track === trackId) titleNode.textContent = line; // still the track shown
}

function onPlay(msg) {
  const title = el("div", { className: "title" });
  trackMetadata(msg.track).then((meta) => { title.textContent = titleLine(meta); });
  playsBody.prepend(el("tr", {}, el("td", {}, msg.track, title), el("td", {}, `${fmtSeconds(msg.start_s)} s`),
    el("td", {}, `${fmtSeconds(msg.end_s)} s`), el("td", {}, alterationText(msg)),
    el("td", {}, fmtScore(msg.confidence))));
}

const SPEC_MIN_HZ = 60;
const SPEC_MAX_HZ = 8000; // the recognizer works at 16 kHz: nothing above 8 kHz reaches it

function drawSpectrogram() {
  if (!audio) return;
  const g = canvas.getContext("2d");
  const bins = new Uint8Array(audio.analyser.frequencyBinCount);
  audio.analyser.getByteFrequencyData(bins);
  const hzPerBin = audio.ctx.sampleRate / 2 / bins.length;
  // Scroll left by one pixel and paint the newest column on the right. The
  // frequency axis is logarithmic, like the recognizer's features: octaves
  // get equal height, so a melody reads the way it sounds.
  g.drawImage(canvas, -1, 0);
  const h = canvas.height;
  for (let y = 0; y < h; y++) {
    const hz = SPEC_MIN_HZ * Math.pow(SPEC_MAX_HZ / SPEC_MIN_HZ, (h - 1 - y) / (h - 1));
    const v = bins[Math.min(bins.length - 1, Math.round(hz / hzPerBin))];
    g.fillStyle = `rgb(${v}, ${Math.floor(v * 0.6)}, ${Math.floor(255 - v * 0.7)})`;
    g.fillRect(canvas.width - 1, y, 1, 1);
  }
  drawing = requestAnimationFrame(drawSpectrogram);
}

function level(buffer) {
  // RMS in dBFS mapped to 0..1 over -60..0 dB, the range a meter is read in.
  const x = new Float32Array(buffer);
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += x[i] * x[i];
  const db = 10 * Math.log10(sum / x.length + 1e-12);
  return Math.max(0, Math.min(1, (db + 60) / 60));
}

async function start() {
  startButton.disabled = true;
  setStatus("Asking for the microphone…");
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
    });
    const ctx = new AudioContext();
    await ctx.audioWorklet.addModule(new URL("./pcm-worklet.js", import.meta.url));
    const source = ctx.createMediaStreamSource(stream);
    const worklet = new AudioWorkletNode(ctx, "pcm-capture", { processorOptions: { chunkSeconds: 0.1 } });
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    const mute = ctx.createGain();
    mute.gain.value = 0; // the graph must reach the destination to be rendered, but nothing is played back
    source.connect(worklet).connect(mute).connect(ctx.destination);
    source.connect(analyser);
    audio = { ctx, stream, worklet, analyser };

    client = new StreamClient({
      window: onWindow,
      play: onPlay,
      dropped: (msg) => setStatus(msg.message, true),
      error: (msg) => setStatus(`${msg.code}: ${msg.message}`, true),
      stopped: (msg) => setStatus(`Stopped: ${msg.windows} windows, ${msg.plays} plays`),
      close: () => { if (audio) stop(false); },
    });
    setStatus("Connecting…");
    const ready = await client.connect({ sampleRate: ctx.sampleRate, format: "f32le", channels: 1 });
    worklet.port.onmessage = (event) => {
      levelNode.value = level(event.data);
      client.send(event.data);
    };
    setStatus(`Listening at ${ctx.sampleRate} Hz · ${ready.tracks} tracks`);
    stopButton.disabled = false;
    drawing = requestAnimationFrame(drawSpectrogram);
  } catch (error) {
    setStatus(`Cannot start: ${error.message}`, true);
    stop(false);
  }
}

function stop(sendStop = true) {
  if (client && sendStop) client.stop();
  if (audio) {
    audio.worklet.port.onmessage = null;
    audio.stream.getTracks().forEach((t) => t.stop());
    audio.ctx.close();
    audio = null;
  }
  cancelAnimationFrame(drawing);
  levelNode.value = 0;
  startButton.disabled = false;
  stopButton.disabled = true;
}

startButton.addEventListener("click", start);
stopButton.addEventListener("click", () => stop(true));
