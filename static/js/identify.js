// Identify page: upload a file to /api/identify and show the answer, the plays (on a timeline of the file, and in a
// table with their evidence) and every window. The plays are the server's file decision, the same as
// `audiocopy scan`; this page only draws them.
import { el, fmtScore, fmtSeconds, getToken, setStatus } from "./api.js";
import { alterationText, partOfTrack } from "./evidence.js";

const form = document.getElementById("identify-form");
const statusNode = document.getElementById("identify-status");
const result = document.getElementById("identify-result");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = form.querySelector("button");
  button.disabled = true;
  result.hidden = true;
  setStatus(statusNode, "Uploading and analysing…");
  try {
    // The token box's token, for a server started with --identify-token (or the admin token).
    const token = getToken();
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch("/api/identify", { method: "POST", body: new FormData(form), headers });
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new Error(data && data.error ? data.error.message : `${response.status}`);
    show(data);
    const f = data.file;
    setStatus(statusNode, `${f.name}: ${fmtSeconds(f.seconds)} s` + (f.truncated ? ` (first ${fmtSeconds(f.analysed_s)} s analysed)` : ""));
  } catch (error) {
    setStatus(statusNode, error.message, true);
  } finally {
    button.disabled = false;
  }
});

// "Artist – Title", the title alone, or "" (the JSON carries both beside the track id).
function titleOf(item) {
  if (!item.title) return "";
  return item.artist ? `${item.artist} – ${item.title}` : item.title;
}

function show(data) {
  document.getElementById("identify-match").textContent = data.match === null ? "no match" : data.match;
  document.getElementById("identify-title").textContent = data.match === null ? "" : titleOf(data);
  document.getElementById("identify-confidence").textContent = data.confidence === null ? "" : `(${fmtScore(data.confidence)})`;
  drawTimeline(document.getElementById("identify-timeline"), data.plays, data.file.analysed_s);
  document.getElementById("identify-plays").replaceChildren(...data.plays.map((p) => el("tr", {},
    el("td", {}, p.track, el("div", { className: "hint" }, titleOf(p))), el("td", {}, fmtSeconds(p.start_s)),
    el("td", {}, fmtSeconds(p.end_s)), el("td", {}, partOfTrack(p)), el("td", { className: "alteration" }, alterationText(p)),
    el("td", {}, fmtScore(p.confidence)))));
  document.getElementById("identify-windows").replaceChildren(...data.windows.map((w) => el("tr",
    { className: w.match === null ? "" : "hit" },
    el("td", {}, fmtSeconds(w.start_s)), el("td", {}, w.match === null ? "—" : w.match), el("td", {}, fmtScore(w.score)),
    el("td", {}, w.candidates.map((c) => `${c.track} ${fmtScore(c.score)}`).join(", ")))));
  result.hidden = false;
}

// --- the plays on a timeline of the file ---------------------------------------------------------------------
// An inline SVG built node by node: names reach it only as text nodes, never as markup, and colours are
// attributes, not style (the page's CSP allows no inline style).

const SVG_NS = "http://www.w3.org/2000/svg";
const LABEL_W = 200, PLOT_W = 760, TOP = 26, LANE_H = 22, BAR_H = 14;

function svgEl(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function clock(seconds) {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = String(m).padStart(2, "0"), ss = String(r).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${m}:${ss}`;
}

// A tick step of 1, 2 or 5 times a power of ten seconds (or whole minutes) giving at most ~10 ticks.
function tickStep(total) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
  return steps.find((s) => total / s <= 10) || 14400;
}

function drawTimeline(container, plays, seconds) {
  const total = Math.max(seconds || 0, ...plays.map((p) => p.end_s), 1);
  const tracks = [...new Set(plays.map((p) => p.track))];
  const height = TOP + Math.max(1, tracks.length) * LANE_H + 6;
  const width = LABEL_W + PLOT_W + 16;
  const x = (t) => LABEL_W + (Math.min(Math.max(t, 0), total) / total) * PLOT_W;
  const svg = svgEl("svg", { class: "file-timeline", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "font-family": "system-ui, sans-serif", "font-size": 12 });
  svg.append(svgEl("title", {}, `Plays in the file (${clock(total)} analysed)`));
  const step = tickStep(total);
  for (let t = 0; t <= total + 1e-6; t += step) {
    svg.append(svgEl("line", { x1: x(t), x2: x(t), y1: TOP - 6, y2: height, stroke: "#d9dee6" }),
      svgEl("text", { x: x(t), y: TOP - 10, "text-anchor": "middle", fill: "#5f6b7a" }, clock(t)));
  }
  tracks.forEach((track, lane) => {
    const sample = plays.find((p) => p.track === track);
    const name = titleOf(sample) || track;
    const shown = name.length > 28 ? name.slice(0, 27) + "…" : name;
    svg.append(svgEl("g", { class: "lane", "data-track": track }, svgEl("title", {}, name === track ? track : `${name} (${track})`),
      svgEl("text", { x: 6, y: TOP + lane * LANE_H + LANE_H - 7, fill: "#1d2330" }, shown)));
  });
  for (const p of plays) {
    const lane = tracks.indexOf(p.track);
    const evidence = [partOfTrack(p) && `track ${partOfTrack(p)} s`, alterationText(p)].filter(Boolean).join(" · ");
    const tip = `${titleOf(p) || p.track} · ${clock(p.start_s)}–${clock(p.end_s)} · confidence ${fmtScore(p.confidence)}`
      + (evidence ? ` · ${evidence}` : "");
    svg.append(svgEl("rect", { class: "play", x: x(p.start_s), y: TOP + lane * LANE_H + (LANE_H - BAR_H) / 2,
      width: Math.max(1, x(p.end_s) - x(p.start_s)), height: BAR_H, fill: "#2563eb", stroke: "#1d4ed8",
      "data-track": p.track }, svgEl("title", {}, tip)));
  }
  if (!plays.length) {
    svg.append(svgEl("text", { x: LABEL_W, y: TOP + LANE_H - 7, fill: "#5f6b7a" }, "No play found in this file."));
  }
  container.replaceChildren(svg);
}
