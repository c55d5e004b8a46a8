// Monitors page, Webhooks section: list, add and remove webhook receivers (admin token needed for all of it,
// since the listing holds the signing key and receiver URLs may carry secrets).
import { api, el, getToken, setStatus } from "./api.js";

const form = document.getElementById("webhook-form");
const body = document.getElementById("webhook-rows");
const statusNode = document.getElementById("webhook-status");
const outboxNode = document.getElementById("webhook-outbox");
const keyBox = document.getElementById("webhook-key");
const keyText = document.getElementById("webhook-key-text");

async function load() {
  if (!getToken()) {
    body.replaceChildren();
    keyBox.hidden = true;
    outboxNode.textContent = "";
    setStatus(statusNode, "Enter the admin token (top of the page) to see and change webhooks.");
    return;
  }
  try {
    const data = await api("/api/webhooks");
    body.replaceChildren(...data.webhooks.map((h) => {
      const remove = el("button", { type: "button", className: "danger" }, "Remove");
      remove.addEventListener("click", () => removeWebhook(h));
      return el("tr", {}, el("td", { className: "url" }, h.url), el("td", {}, remove));
    }));
    keyText.textContent = data.signing_key;
    keyBox.hidden = false;
    const failed = data.recent_failures.length ? `; latest: ${data.recent_failures[0].last_error}` : "";
    outboxNode.textContent = `Outbox: ${data.outbox.pending} pending, ${data.outbox.failed} given up${failed}`;
    if (statusNode.textContent.startsWith("Enter the admin token")) setStatus(statusNode, "");
  } catch (error) {
    setStatus(statusNode, error.message, true);
  }
}

async function removeWebhook(h) {
  if (!confirm(`Stop sending plays to ${h.url}?`)) return;
  try {
    await api(`/api/webhooks/${encodeURIComponent(h.id)}`, { method: "DELETE" });
    setStatus(statusNode, "Webhook removed");
    await load();
  } catch (error) {
    setStatus(statusNode, error.message, true);
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(form));
  try {
    await api("/api/webhooks", { method: "POST", json: { url: data.url } });
    setStatus(statusNode, "Webhook added");
    form.reset();
    await load();
  } catch (error) {
    setStatus(statusNode, error.message, true);
  }
});

load();
setInterval(load, 5000);
