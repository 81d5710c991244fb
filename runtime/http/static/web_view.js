// radixlm live view: polls GET /stats (~3 per second) and GET /cache/tree (~1 per second)
// while the tab is visible, and renders the cards, charts, request table and radix tree.
// Nothing polls while the tab is hidden or paused, so an unwatched page costs the server nothing.

import { ApiError, getJson, setApiKey, setKeyHandler } from "./api.js";
import { LineChart } from "./charts.js";
import { Playground } from "./playground.js";
import { TreeView, age } from "./tree_view.js";

const STATS_EVERY_MS = 333;
const TREE_EVERY_MS = 1000;
const RATE_WINDOW_S = 2; // rates and the recent hit rate are differences over this window

const $ = (id) => document.getElementById(id);
const state = { paused: false, treeNode: null, history: [], connected: false };

const hitChart = new LineChart($("chart-hits"), [{ color: "#e2457a" }, { color: "#6b7280", dashed: true }],
  { yMax: 1, format: (v) => `${Math.round(v * 100)}%` });
const rateChart = new LineChart($("chart-rates"), [{ color: "#2f6fdf" }, { color: "#20a27a" }, { color: "#b35ad6" }]);
const tree = new TreeView({
  container: $("tree"), pathNav: $("tree-path"), summary: $("tree-summary"), detail: $("node-detail"),
  onExpand: (id) => { state.treeNode = id; pollTree(); },
});

function setStatus(text, ok) {
  const el = $("status");
  el.textContent = text;
  el.className = "status " + (ok ? "ok" : "bad");
}

setKeyHandler((message) => {
  state.connected = false;
  setStatus("API key needed", false);
  $("key-form").hidden = false;
  $("key-input").placeholder = message.includes("wrong") ? "API key (the last one was refused)" : "API key";
});

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  setApiKey($("key-input").value);
  $("key-input").value = "";
  $("key-form").hidden = true;
  loadModel();
});

$("pause").addEventListener("click", () => {
  state.paused = !state.paused;
  $("pause").textContent = state.paused ? "Resume" : "Pause";
  setStatus(state.paused ? "paused" : "live", !state.paused);
});

async function loadModel() {
  try {
    const info = await getJson("/model_info");
    $("model").textContent = info.served_model_name || info.model_path;
  } catch (_) { /* shown by the status */ }
}

// ---- /stats -------------------------------------------------------------------------------

function fmt(n) { return n >= 10000 ? `${(n / 1000).toFixed(1)}k` : String(Math.round(n)); }

function windowed(now) {
  // the newest sample at least RATE_WINDOW_S older than `now` (or the oldest one)
  const h = state.history;
  let old = h[0];
  for (const s of h) { if (now.time_s - s.time_s >= RATE_WINDOW_S) old = s; else break; }
  return old;
}

function renderStats(s) {
  state.history.push(s);
  while (state.history.length > 2 && s.time_s - state.history[1].time_s > RATE_WINDOW_S) state.history.shift();
  const old = windowed(s);
  const dt = Math.max(1e-6, s.time_s - old.time_s);
  const delta = (k) => s.counters[k] - old.counters[k];
  const rates = [delta("extend_tokens") / dt, delta("decode_tokens") / dt, delta("jump_forward_tokens") / dt];
  if (old === s) rates.fill(0);
  const recentPrompt = delta("prompt_tokens");
  const recentHit = recentPrompt > 0 ? delta("cached_tokens") / recentPrompt : null;

  const hit = $("hit-rate");
  hit.textContent = s.counters.prompt_tokens ? `${(100 * s.cache_hit_rate).toFixed(1)}%` : "–";
  hit.dataset.value = s.cache_hit_rate;
  $("hit-detail").textContent = `${fmt(s.counters.cached_tokens)} of ${fmt(s.counters.prompt_tokens)} prompt tokens ` +
    `from the cache` + (s.radix_cache ? "" : " (radix cache disabled)");
  $("running").textContent = s.running;
  $("waiting").textContent = s.waiting;
  $("grammar").textContent = s.grammar_pending;
  $("rate-extend").textContent = fmt(rates[0]);
  $("rate-decode").textContent = fmt(rates[1]);
  $("rate-jump").textContent = fmt(rates[2]);
  renderKv(s);
  renderTable(s);
  hitChart.push(s.time_s, [recentHit, s.counters.prompt_tokens ? s.cache_hit_rate : null]);
  rateChart.push(s.time_s, rates);
  hitChart.draw();
  rateChart.draw();
}

function renderKv(s) {
  const size = s.kv_pool_size;
  const parts = { held: s.kv_held, protected: s.kv_protected, evictable: s.kv_evictable };
  for (const [name, n] of Object.entries(parts)) {
    $(`kv-${name}`).style.width = `${(100 * n) / size}%`;
    $(`kv-${name}-n`).textContent = fmt(n);
  }
  $("kv-free-n").textContent = fmt(s.kv_free);
  $("kv-size").textContent = `${fmt(size)} slots`;
}

function cell(text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text;
  return td;
}

function renderTable(s) {
  const body = $("batch-table").tBodies[0];
  const rows = s.requests.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.rid = r.rid;
    tr.dataset.state = r.state;
    const badge = document.createElement("span");
    badge.className = `state state-${r.state}`;
    badge.textContent = r.state === "grammar" ? "waiting for grammar" : r.state;
    const stateCell = cell("", "state-cell");
    stateCell.append(badge);
    const bar = document.createElement("span");
    bar.className = "prompt-bar";
    const total = Math.max(1, r.prompt_tokens);
    bar.innerHTML = `<span class="c" style="width:${(100 * r.cached_tokens) / total}%"></span>` +
      `<span class="p" style="width:${(100 * r.computed_tokens) / total}%"></span>`;
    const prompt = cell("", "prompt");
    prompt.append(bar, document.createTextNode(`${r.cached_tokens} · ${r.computed_tokens} of ${r.prompt_tokens}`));
    tr.append(cell(r.rid, "rid"), stateCell, prompt, cell(r.constraint || "–"), cell(r.generated_tokens, "num"),
              cell(r.jump_forward_tokens, "num"), cell(r.retractions, "num"), cell(age(r.age_s).replace(" ago", ""), "num"));
    return tr;
  });
  if (!rows.length) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    const td = cell("no request in the scheduler");
    td.colSpan = 8;
    tr.append(td);
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  const shown = s.requests.length, total = s.running + s.waiting + s.grammar_pending;
  $("batch-summary").textContent = total > shown ? `${shown} of ${total} shown` : `${total} in flight`;
}

// ---- polling ------------------------------------------------------------------------------

function live() { return !state.paused && !document.hidden; }

async function pollStats() {
  if (!live()) return;
  try {
    renderStats(await getJson("/stats"));
    if (!state.connected) { state.connected = true; setStatus("live", true); loadModel(); }
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) setStatus(`stats: ${e.message}`, false);
  }
}

async function pollTree() {
  if (!live()) return;
  const query = state.treeNode === null ? "" : `?node=${state.treeNode}`;
  try {
    tree.update(await getJson(`/cache/tree${query}`));
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) { state.treeNode = null; return pollTree(); } // evicted: back to the root
    if (!(e instanceof ApiError && e.status === 401)) setStatus(`tree: ${e.message}`, false);
  }
}

function every(ms, fn) {
  const loop = async () => { await fn(); setTimeout(loop, ms); };
  loop();
}

every(STATS_EVERY_MS, pollStats);
every(TREE_EVERY_MS, pollTree);
new Playground();
