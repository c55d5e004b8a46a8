// Titles and artists for track ids: the id is the key everywhere, people read titles.
// Each id's record is fetched once per page (GET /api/catalog/tracks/{id}/metadata) and kept;
// a failed lookup resolves to null, so a display falls back to the id.
import { api } from "./api.js";

const cache = new Map();

export function trackMetadata(trackId) {
  if (!cache.has(trackId)) {
    cache.set(trackId, api(`/api/catalog/tracks/${encodeURIComponent(trackId)}/metadata`)
      .then((data) => data.metadata)
      .catch(() => { cache.delete(trackId); return null; }));
  }
  return cache.get(trackId);
}

// "Artist – Title", the title alone, or "" when the record has neither.
export function titleLine(meta) {
  if (!meta || !meta.title) return "";
  return meta.artist ? `${meta.artist} – ${meta.title}` : meta.title;
}
