// The server's JSON routes, with the API key the page keeps in this tab's sessionStorage.
// A 401 asks for the key (onNeedKey) and rejects; every caller retries on its next poll.

const KEY_NAME = "radixlm.apiKey";
let onNeedKey = () => {};

export function setKeyHandler(handler) { onNeedKey = handler; }
export function apiKey() { return sessionStorage.getItem(KEY_NAME) || ""; }
export function setApiKey(key) { sessionStorage.setItem(KEY_NAME, key); }

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function failure(resp) {
  let message = `${resp.status} ${resp.statusText}`;
  try { message = (await resp.json()).error.message; } catch (_) { /* not a JSON error body */ }
  if (resp.status === 401) onNeedKey(message);
  return new ApiError(resp.status, message);
}

export async function getJson(path) {
  const resp = await fetch(path, { headers: headers(), cache: "no-store" });
  if (!resp.ok) throw await failure(resp);
  return resp.json();
}

export async function postJson(path, body) {
  const resp = await fetch(path, {
    method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body),
  });
  if (!resp.ok) throw await failure(resp);
  return resp.json();
}

// POST a streaming /generate; calls onEvent(event) per `data:` event until [DONE].
export async function postStream(path, body, onEvent, signal) {
  const resp = await fetch(path, {
    method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body), signal,
  });
  if (!resp.ok) throw await failure(resp);
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!chunk.startsWith("data: ")) continue;
      const data = chunk.slice(6);
      if (data === "[DONE]") return;
      onEvent(JSON.parse(data));
    }
  }
}
