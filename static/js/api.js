// Shared helpers for the pages: the admin token, JSON API calls, safe DOM building.
// Every page script imports this module. Text from the server (track names,
// URLs, error messages) only ever reaches the page through textContent, so it
// is shown as text and can never become markup.

const TOKEN_KEY = "audiocopy.adminToken";

export function getToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

// fetch() wrapper: adds the admin token, returns parsed JSON, throws Error(message) on API errors.
export async function api(path, { method = "GET", body = undefined, json = undefined } = {}) {
  const headers = {};
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const response = await fetch(path, { method, body, headers });
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    // a non-JSON answer (a proxy's error page): reported by status below
  }
  if (!response.ok) {
    const message = data && data.error ? data.error.message : `${response.status} ${response.statusText}`;
    const error = new Error(message);
    error.status = response.status;
    error.code = data && data.error ? data.error.code : undefined;
    throw error;
  }
  return data;
}

// el("td", {className: "x"}, "text", childNode) -> element; strings become text nodes.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function fmtSeconds(s) {
  if (s === null || s === undefined) return "";
  return Number(s).toFixed(1);
}

export function fmtScore(s) {
  if (s === null || s === undefined) return "";
  const n = Number(s);
  return (n >= 0 ? "+" : "") + n.toFixed(2);
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function setStatus(node, text, isError = false) {
  node.textContent = text;
  node.classList.toggle("error", isError);
}
