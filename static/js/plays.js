// Plays page: filter the plays log and export it (the export links carry the same filters), with each play's
// evidence (the part of the track played, its alteration); then the Reports section: totals per track, source or
// rights owner over a date range (GET /api/plays/totals, exported as CSV or JSON) and the timeline picture of one
// source's day (GET /api/plays/timeline.svg, drawn by the server).
import { api, el, fmtScore, fmtSeconds, setStatus } from "./api.js";
import { alterationText, partOfTrack } from "./evidence.js";
import { titleLine, trackMetadata } from "./titles.js";

const form = document.getElementById("plays-filter");
const body = document.getElementById("plays-rows");
const statusNode = document.getElementById("plays-status");
// "recovered": the server stopped (a crash) while the play was open; it ends at its last update.
const STATUS_TITLES = {
  open: "still playing: updated every few seconds",
  closed: "ended",
  recovered: "the server stopped during this play; it ends at its last update",
};

function query() {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) if (value) params.set(key, value);
  return params.toString();
}

// The track id (the stable key) with its "Artist – Title" under it once looked up.
function trackCell(trackId) {
  const title = el("div", { className: "hint" });
  trackMetadata(trackId).then((meta) => { title.textContent = titleLine(meta); });
  return el("td", {}, trackId, title);
}

// A source name is proven by a stream token, or is a URL monitor of this server; any other stream chose its
// name itself, so its plays say so next to the name.
function sourceCell(p) {
  if (p.source_verified) return el("td", {}, p.source);
  return el("td", {}, p.source, " ", el("span", {
    className: "hint unverified", title: "streamed without a stream token: the client chose this name itself",
  }, "(unverified)"));
}

async function load() {
  const q = query();
  document.getElementById("export-csv").href = `/api/plays.csv${q ? "?" + q : ""}`;
  document.getElementById("export-json").href = `/api/plays.json${q ? "?" + q : ""}`;
  try {
    const data = await api(`/api/plays${q ? "?" + q : ""}`);
    body.replaceChildren(...data.plays.map((p) => el("tr", {}, el("td", {}, p.started_at.replace("T", " ").replace("Z", "")),
      trackCell(p.track), sourceCell(p), el("td", {}, fmtSeconds(p.duration_s)),
      el("td", {}, partOfTrack(p)), el("td", { className: "alteration" }, alterationText(p)),
      el("td", {}, fmtScore(p.confidence)), el("td", {}, p.windows),
      el("td", { title: STATUS_TITLES[p.status] || "" }, p.status || "closed"))));
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

// --- Reports: totals --------------------------------------------------------------------------------------------

const reportForm = document.getElementById("report-form");
const reportHead = document.getElementById("report-head");
const reportRows = document.getElementById("report-rows");
const reportStatus = document.getElementById("report-status");
const BY_LABELS = { track: "Track", source: "Source", owner: "Rights owner" };

function reportQuery(format) {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(reportForm)) if (value) params.set(key, value);
  params.set("format", format);
  return `/api/plays/totals?${params}`;
}

function when(stamp) {
  return stamp ? stamp.replace("T", " ").replace(/\.\d+Z$/, "") : "";
}

function totalsRow(by, row) {
  const cells = [];
  if (by === "track") {
    cells.push(el("td", {}, row.track), el("td", {}, row.title || ""), el("td", {}, row.artist || ""));
  } else if (by === "owner") {
    cells.push(el("td", { className: row.owner === null ? "hint" : "" }, row.owner === null ? "(no rights owner)" : row.owner),
      el("td", {}, row.tracks));
  } else {
    cells.push(el("td", {}, row.source));
  }
  cells.push(el("td", {}, row.plays), el("td", {}, fmtSeconds(row.seconds)), el("td", {}, when(row.first_at)),
    el("td", {}, when(row.last_at)));
  return el("tr", { dataset: { key: String(row[by] ?? "") } }, ...cells);
}

async function loadTotals() {
  document.getElementById("report-csv").href = reportQuery("csv");
  const jsonUrl = reportQuery("json");
  document.getElementById("report-json").href = jsonUrl;
  try {
    const data = await api(jsonUrl);
    const by = data.by;
    const names = by === "track" ? ["Track", "Title", "Artist"] : by === "owner" ? [BY_LABELS.owner, "Tracks"] : [BY_LABELS[by]];
    reportHead.replaceChildren(el("tr", {}, ...[...names, "Plays", "Seconds", "First start (UTC)", "Last end (UTC)"]
      .map((name) => el("th", {}, name))));
    reportRows.replaceChildren(...data.totals.map((row) => totalsRow(by, row)));
    const plays = data.totals.reduce((n, row) => n + row.plays, 0);
    setStatus(reportStatus, `${data.count} ${by === "owner" ? "rights owners" : by + "s"}, ${plays} plays`
      + (data.truncated ? " (only the first rows are shown)" : ""));
  } catch (error) {
    reportRows.replaceChildren();
    setStatus(reportStatus, error.message, true);
  }
}

reportForm.addEventListener("submit", (event) => {
  event.preventDefault();
  loadTotals();
});
// The last 30 days (UTC) to start with: totals over all time read the whole store (seconds on a long one).
const today = new Date();
reportForm.elements.until.value = today.toISOString().slice(0, 10);
reportForm.elements.since.value = new Date(today.getTime() - 29 * 86400e3).toISOString().slice(0, 10);
loadTotals();

// --- Reports: timeline of a day --------------------------------------------------------------------------------

const timelineForm = document.getElementById("timeline-form");
const sourceInput = document.getElementById("timeline-source"); // a text box, seen sources suggested
const dayInput = document.getElementById("timeline-day");
const timelineImg = document.getElementById("timeline-img");
const timelineLink = document.getElementById("timeline-link");
const timelineStatus = document.getElementById("timeline-status");

function timelineUrl() {
  const params = new URLSearchParams({ source: sourceInput.value });
  if (dayInput.value) params.set("day", dayInput.value);
  return `/api/plays/timeline.svg?${params}`;
}

// The picture is the server's (same origin, as the page's CSP wants); when it fails, the API's JSON error says why.
function showTimeline() {
  if (!sourceInput.value) {
    timelineImg.hidden = true;
    setStatus(timelineStatus, "Choose a source (the sources seen so far are suggested).");
    return;
  }
  const url = timelineUrl();
  setStatus(timelineStatus, "Drawing…");
  timelineImg.alt = `Timeline of the plays on ${sourceInput.value}, ${dayInput.value || "today"} (UTC)`;
  timelineImg.src = url;
  timelineLink.href = url;
}

timelineImg.addEventListener("load", () => {
  timelineImg.hidden = false;
  timelineLink.hidden = false;
  setStatus(timelineStatus, "Hover a bar for the play's details.");
});

timelineImg.addEventListener("error", async () => {
  timelineImg.hidden = true;
  timelineLink.hidden = true;
  try {
    const response = await fetch(timelineImg.src);
    const data = await response.json().catch(() => null);
    setStatus(timelineStatus, data && data.error ? data.error.message : `the picture did not load (${response.status})`, true);
  } catch (error) {
    setStatus(timelineStatus, error.message, true);
  }
});

async function loadSources() {
  dayInput.value = new Date().toISOString().slice(0, 10); // today, in UTC like the picture
  try {
    const data = await api("/api/plays/sources");
    const names = [...new Set(data.sources.map((s) => s.name))]; // most recently seen first
    document.getElementById("timeline-sources").replaceChildren(...names.map((name) => el("option", { value: name })));
    if (!sourceInput.value && names.length) sourceInput.value = names[0];
    showTimeline();
  } catch (error) {
    setStatus(timelineStatus, error.message, true);
  }
}

timelineForm.addEventListener("submit", (event) => {
  event.preventDefault();
  showTimeline();
});
loadSources();
