// Catalog page: list tracks, delete (admin), add by upload (admin) with job progress; reloads when jobs finish.
import { api, el, fmtBytes, setStatus } from "./api.js";

const tracksBody = document.getElementById("catalog-tracks");
const summary = document.getElementById("catalog-summary");
const jobsBody = document.getElementById("jobs");
const statusNode = document.getElementById("catalog-status");
const addForm = document.getElementById("add-form");
let polling = 0;

async function loadCatalog() {
  const data = await api("/api/catalog");
  document.getElementById("catalog-size").textContent = `${data.loaded_tracks} tracks`;
  summary.textContent = `${data.tracks.length} tracks · engine ${data.engine}` +
    (data.calibration && data.calibration.score_offset !== undefined
      ? ` · catalog offset ${Number(data.calibration.score_offset).toFixed(3)}` : "");
  tracksBody.replaceChildren(...data.tracks.map((t) => {
    const remove = el("button", { type: "button", className: "danger" }, "Delete");
    remove.addEventListener("click", () => deleteTrack(t.track_id));
    return el("tr", {}, el("td", {}, t.track_id), el("td", {}, fmtBytes(t.model_bytes)),
      el("td", {}, t.threshold_logit === null ? "" : Number(t.threshold_logit).toFixed(3)), el("td", {}, remove));
  }));
}

async function deleteTrack(trackId) {
  if (!confirm(`Delete ${trackId} from the catalog?`)) return;
  setStatus(statusNode, `Deleting ${trackId}…`);
  try {
    await api(`/api/catalog/tracks/${encodeURIComponent(trackId)}`, { method: "DELETE" });
    setStatus(statusNode, `${trackId} deleted; the recognizer was reloaded.`);
    await loadCatalog();
  } catch (error) {
    setStatus(statusNode, error.message, true);
  }
}

async function loadJobs() {
  const data = await api("/api/jobs");
  jobsBody.replaceChildren(...data.jobs.map((j) => el("tr", {}, el("td", {}, j.track_id), el("td", {}, j.state),
    el("td", {}, el("progress", { max: 1, value: j.progress })), el("td", {}, j.message || j.stage))));
  const active = data.jobs.some((j) => ["queued", "running", "reloading"].includes(j.state));
  clearTimeout(polling);
  if (active) polling = setTimeout(refresh, 2000);
  return active;
}

let wasActive = false;
async function refresh() {
  try {
    const active = await loadJobs();
    if (wasActive && !active) await loadCatalog(); // a job just finished: show the new track
    wasActive = active;
  } catch (error) {
    setStatus(statusNode, error.message, true);
  }
}

if (addForm) {
  addForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    setStatus(statusNode, "Uploading…");
    try {
      const data = await api("/api/catalog/tracks", { method: "POST", body: new FormData(addForm) });
      setStatus(statusNode, `Training ${data.job.track_id} in the background.`);
      addForm.reset();
      await refresh();
    } catch (error) {
      setStatus(statusNode, error.message, true);
    }
  });
}

loadCatalog().catch((error) => setStatus(statusNode, error.message, true));
refresh();
