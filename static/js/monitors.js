// Monitors page: list URL monitors with their state and current match; add/remove (admin).
import { api, el, fmtScore, setStatus } from "./api.js";

const form = document.getElementById("monitor-form");
const body = document.getElementById("monitor-rows");
const statusNode = document.getElementById("monitor-status");
const urlHint = document.getElementById("monitor-url-hint");

async function load() {
  try {
    const data = await api("/api/monitors");
    // Without the admin token the server sends scheme://host/… only (URLs may carry stream keys).
    urlHint.hidden = data.urls_shown || data.monitors.length === 0;
    body.replaceChildren(...data.monitors.map((m) => {
      const remove = el("button", { type: "button", className: "danger" }, "Remove");
      remove.addEventListener("click", () => removeMonitor(m));
      const now = m.current ? `${m.current.match === null ? "no match" : m.current.match} ${fmtScore(m.current.score)}` : "";
      return el("tr", {}, el("td", {}, m.name), el("td", { className: "url" }, m.url),
        el("td", { title: m.message }, m.state + (m.message ? ` — ${m.message}` : "")), el("td", {}, now),
        el("td", {}, m.plays), el("td", {}, remove));
    }));
  } catch (error) {
    setStatus(statusNode, error.message, true);
  }
}

async function removeMonitor(m) {
  if (!confirm(`Stop monitoring ${m.name}?`)) return;
  try {
    await api(`/api/monitors/${encodeURIComponent(m.id)}`, { method: "DELETE" });
    setStatus(statusNode, `${m.name} removed`);
    await load();
  } catch (error) {
    setStatus(statusNode, error.message, true);
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(form));
  try {
    const result = await api("/api/monitors", { method: "POST", json: { url: data.url, name: data.name || null } });
    setStatus(statusNode, `Monitoring ${result.monitor.name}`);
    form.reset();
    await load();
  } catch (error) {
    setStatus(statusNode, error.message, true);
  }
});

load();
setInterval(load, 3000);
