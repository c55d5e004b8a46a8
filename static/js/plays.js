// Plays page: filter the plays log and export it (the export links carry the same filters).
import { api, el, fmtScore, fmtSeconds, setStatus } from "./api.js";

const form = document.getElementById("plays-filter");
const body = document.getElementById("plays-rows");
const statusNode = document.getElementById("plays-status");

function query() {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) if (value) params.set(key, value);
  return params.toString();
}

async function load() {
  const q = query();
  document.getElementById("export-csv").href = `/api/plays.csv${q ? "?" + q : ""}`;
  document.getElementById("export-json").href = `/api/plays.json${q ? "?" + q : ""}`;
  try {
    const data = await api(`/api/plays${q ? "?" + q : ""}`);
    body.replaceChildren(...data.plays.map((p) => el("tr", {}, el("td", {}, p.started_at.replace("T", " ").replace("Z", "")),
      el("td", {}, p.track), el("td", {}, p.source), el("td", {}, fmtSeconds(p.duration_s)),
      el("td", {}, fmtScore(p.confidence)), el("td", {}, p.windows))));
    setStatus(statusNode, `${data.count} plays`);
  } catch (error) {
    setStatus(statusNode, error.message, true);
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  load();
});
load();
