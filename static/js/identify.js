// Identify page: upload a file to /api/identify and show the answer, the plays and every window.
import { el, fmtScore, fmtSeconds, setStatus } from "./api.js";

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
    const response = await fetch("/api/identify", { method: "POST", body: new FormData(form) });
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

function show(data) {
  document.getElementById("identify-match").textContent = data.match === null ? "no match" : data.match;
  document.getElementById("identify-confidence").textContent = data.confidence === null ? "" : `(${fmtScore(data.confidence)})`;
  document.getElementById("identify-plays").replaceChildren(...data.plays.map((p) => el("tr", {},
    el("td", {}, p.track), el("td", {}, fmtSeconds(p.start_s)), el("td", {}, fmtSeconds(p.end_s)),
    el("td", {}, fmtScore(p.confidence)))));
  document.getElementById("identify-windows").replaceChildren(...data.windows.map((w) => el("tr",
    { className: w.match === null ? "" : "hit" },
    el("td", {}, fmtSeconds(w.start_s)), el("td", {}, w.match === null ? "—" : w.match), el("td", {}, fmtScore(w.score)),
    el("td", {}, w.candidates.map((c) => `${c.track} ${fmtScore(c.score)}`).join(", ")))));
  result.hidden = false;
}
