// Catalog page: list tracks, delete (admin), add by upload (admin) with job progress; reloads when jobs finish.
import { api, el, fmtBytes, fmtSeconds, setStatus } from "./api.js";

const tracksBody = document.getElementById("catalog-tracks");
const summary = document.getElementById("catalog-summary");
const jobsBody = document.getElementById("jobs");
const statusNode = document.getElementById("catalog-status");
const headRow = document.getElementById("catalog-head");
const addForm = document.getElementById("add-form");
let polling = 0;

const fixed3 = (v) => (v === null || v === undefined ? "" : Number(v).toFixed(3));
// The columns that apply to each engine's track records; an engine not listed gets the track names only.
// cnnbin trains a model and a threshold per track; fingerprint stores the track's vectors, nothing per track to tune.
const COLUMNS = {
  cnnbin: [["Model size", (t) => fmtBytes(t.model_bytes)], ["Threshold (logit)", (t) => fixed3(t.threshold_logit)]],
  fingerprint: [["Duration (s)", (t) => fmtSeconds(t.duration_s)], ["Vectors", (t) => t.n_vectors ?? ""]],
};

async function loadCatalog() {
  const data = await api("/api/catalog");
  document.getElementById("catalog-size").textContent = `${data.loaded_tracks} tracks`;
  summary.textContent = `${data.tracks.length} tracks · engine ${data.engine}` +
    (data.calibration && data.calibration.score_offset !== undefined
      ? ` · catalog offset ${Number(data.calibration.score_offset).toFixed(3)}` : "");
  const columns = COLUMNS[data.engine] || [];
  headRow.replaceChildren(el("th", {}, "Track"), ...columns.map(([title]) => el("th", {}, title)), el("th"));
  tracksBody.replaceChildren(...data.tracks.map((t) => {
    const remove = el("button", { type: "button", className: "danger" }, "Delete");
    // Where this row's Delete reports: beside its button, so a refusal is seen where the click was.
    const note = el("span", { className: "row-note", role: "status" });
    remove.addEventListener("click", () => deleteTrack(t.track_id, note));
    return el("tr", { dataset: { track: t.track_id } }, el("td", {}, t.track_id),
      ...columns.map(([, cell]) => el("td", {}, cell(t))), el("td", {}, remove, " ", note));
  }));
}

async function deleteTrack(trackId, note) {
  if (!confirm(`Delete ${trackId} from the catalog?`)) return;
  setStatus(note, "Deleting…");
  setStatus(statusNode, `Deleting ${trackId}…`);
  try {
    await api(`/api/catalog/tracks/${encodeURIComponent(trackId)}`, { method: "DELETE" });
    setStatus(statusNode, `${trackId} deleted; the recognizer was reloaded.`);
    await loadCatalog();
  } catch (error) {
    const message = `Not deleted: ${error.message}`;
    setStatus(note, message, true);
    setStatus(statusNode, `${trackId}: ${message}`, true);
    note.scrollIntoView({ block: "nearest" });
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
