// The playground: a prompt or chat messages, sampling parameters and an optional constraint,
// streamed through POST /generate. The text is marked token by token: prompt tokens served
// from the radix cache (meta_info.cached_tokens), prompt tokens computed, sampled tokens, and
// tokens jump-forward appended (meta_info.jump_forward_positions, wire-protocol B.6).
// POST /token_pieces gives the text each token adds (the page has no tokenizer).

import { postJson, postStream } from "./api.js";

const $ = (id) => document.getElementById(id);
let runs = 0;

export class Playground {
  constructor() {
    this.abort = null;
    $("pg-form").addEventListener("submit", (e) => { e.preventDefault(); this.run(); });
    $("pg-stop-run").addEventListener("click", () => this.abort && this.abort.abort());
    for (const radio of document.querySelectorAll("input[name=pg-mode]")) {
      radio.addEventListener("change", () => this.showMode());
    }
    $("pg-add-message").addEventListener("click", () => this.addMessage("user", ""));
    this.addMessage("system", "You are a concise assistant.");
    this.addMessage("user", "Name three prime numbers.");
  }

  showMode() {
    const chat = $("pg-mode-chat").checked;
    $("pg-prompt").hidden = chat;
    $("pg-chat").hidden = !chat;
  }

  addMessage(role, content) {
    const row = document.createElement("div");
    row.className = "pg-message";
    const select = document.createElement("select");
    for (const r of ["system", "user", "assistant"]) select.add(new Option(r, r, false, r === role));
    const text = document.createElement("textarea");
    text.rows = 2;
    text.value = content;
    row.append(select, text);
    $("pg-messages").append(row);
  }

  prompt() {
    if (!$("pg-mode-chat").checked) return { text: $("pg-prompt").value };
    const messages = [...document.querySelectorAll(".pg-message")].map((row) => ({
      role: row.querySelector("select").value, content: row.querySelector("textarea").value,
    }));
    return { messages };
  }

  samplingParams() {
    const params = { max_new_tokens: Number($("pg-max-new-tokens").value), temperature: Number($("pg-temperature").value),
                     top_p: Number($("pg-top-p").value), top_k: Number($("pg-top-k").value) };
    if ($("pg-seed").value !== "") params.sampling_seed = Number($("pg-seed").value);
    if ($("pg-stop").value !== "") params.stop = $("pg-stop").value;
    const kind = $("pg-constraint-kind").value;
    if (kind) {
      // Generic on purpose: the kind is the name of the sampling parameter it sets.
      const spec = $("pg-constraint").value;
      params[kind] = kind === "choices" ? JSON.parse(spec) : spec;
    }
    return params;
  }

  async run() {
    const out = $("pg-output"), error = $("pg-error");
    error.hidden = true;
    out.dataset.done = "false";
    out.replaceChildren();
    $("pg-prompt-view").replaceChildren();
    $("pg-meta").textContent = "";
    this.abort = new AbortController();
    $("pg-run").disabled = true;
    $("pg-stop-run").disabled = false;
    const state = { text: "", ids: [], jumped: new Set(), meta: null, prompt: null };
    try {
      state.prompt = await postJson("/token_pieces", this.prompt());
      const body = { input_ids: state.prompt.input_ids, sampling_params: this.samplingParams(), stream: true,
                     rid: `playground-${Date.now().toString(36)}-${++runs}` };
      this.renderPrompt(state.prompt, 0);
      await postStream("/generate", body, (event) => this.onEvent(event, state), this.abort.signal);
      await this.renderOutput(state, true);
    } catch (e) {
      if (e.name !== "AbortError") { error.textContent = e.message; error.hidden = false; }
    } finally {
      out.dataset.text = state.text;
      out.dataset.done = "true";
      $("pg-run").disabled = false;
      $("pg-stop-run").disabled = true;
      this.abort = null;
    }
  }

  onEvent(event, state) {
    if (event.error) throw new Error(event.error.message);
    state.text = event.text;
    state.ids = event.output_ids;
    state.meta = event.meta_info;
    for (const p of event.meta_info.jump_forward_positions || []) state.jumped.add(p);
    this.renderPrompt(state.prompt, event.meta_info.cached_tokens);
    // While streaming, plain text (cheap); the token marks come when the stream ends.
    $("pg-output").textContent = state.text;
    this.renderMeta(state);
  }

  renderPrompt(prompt, cached) {
    const view = $("pg-prompt-view");
    view.replaceChildren(span(prompt.pieces.slice(0, cached).join(""), "tok-cached"),
                         span(prompt.pieces.slice(cached).join(""), "tok-prompt"));
  }

  async renderOutput(state) {
    const out = $("pg-output");
    const pieces = state.ids.length
      ? (await postJson("/token_pieces", { input_ids: state.ids, skip_special_tokens: true })).pieces : [];
    // The visible text may be shorter than the pieces (a trimmed stop string): mark what matches.
    const spans = [];
    let pos = 0;
    for (let i = 0; i < pieces.length && pos < state.text.length; i++) {
      if (!pieces[i]) continue;
      if (!state.text.startsWith(pieces[i], pos)) break;
      const el = span(pieces[i], state.jumped.has(i) ? "tok-jump" : "tok-sampled");
      el.dataset.pos = i;
      spans.push(el);
      pos += pieces[i].length;
    }
    if (pos < state.text.length) spans.push(span(state.text.slice(pos), "tok-sampled"));
    out.replaceChildren(...spans);
    this.renderMeta(state);
  }

  renderMeta(state) {
    const m = state.meta;
    if (!m) return;
    const finish = m.finish_reason ? ` · finished: ${m.finish_reason.type}` : "";
    $("pg-meta").textContent = `prompt ${m.prompt_tokens} tokens (${m.cached_tokens} from the cache) · ` +
      `${m.completion_tokens} generated, ${m.jump_forward_tokens} of them jump-forwarded${finish}` +
      (m.e2e_latency ? ` · ${m.e2e_latency.toFixed(2)} s` : "");
  }
}

function span(text, cls) {
  const el = document.createElement("span");
  el.className = cls;
  el.textContent = text;
  return el;
}
