// Catalog page, metadata form: pick a track id, see its title/artist/rights, save the changed fields (admin).
// The track id is the key; only the fields below change (PATCH /api/catalog/tracks/{id}/metadata).
import { api, el, setStatus } from "./api.js";

const form = document.getElementById("metadata-form");
const list = document.getElementById("metadata-tracks");
const statusNode = document.getElementById("metadata-status");
const FIELDS = ["title", "artist", "album", "isrc", "owner_id", "rights_owner"];
const url = (id) => `/api/catalog/tracks/${encodeURIComponent(id)}/metadata`;
let known = new Set();
let loaded = ""; // the id whose record is in the fields: a second "change" for it must not undo edits

async function loadTracks() {
  const data = await api("/api/catalog");
  known = new Set(data.tracks.map((t) => t.track_id));
  list.replaceChildren(...data.tracks.map((t) => el("option", { value: t.track_id })));
}

async function loadRecord() {
  const id = form.elements.track_id.value;
  if (!known.has(id) || id === loaded) return;
  loaded = id;
  try {
    const data = await api(url(id));
    for (const name of FIELDS) form.elements[name].value = data.metadata[name] || "";
    setStatus(statusNode, data.metadata.origin ? `from ${data.metadata.origin}` : "no metadata yet");
  } catch (error) {
    loaded = "";
    setStatus(statusNode, error.message, true);
  }
}

form.elements.track_id.addEventListener("change", loadRecord);
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = form.elements.track_id.value;
  const json = Object.fromEntries(FIELDS.map((name) => [name, form.elements[name].value]));
  setStatus(statusNode, "Saving…");
  try {
    const data = await api(url(id), { method: "PATCH", json });
    for (const name of FIELDS) form.elements[name].value = data.metadata[name] || "";
    setStatus(statusNode, `Saved ${id}.`);
  } catch (error) {
    setStatus(statusNode, `Not saved: ${error.message}`, true);
  }
});

loadTracks().catch((error) => setStatus(statusNode, error.message, true));
