// The radix tree as an icicle chart: the start node on the left, one column per level, each
// node as tall as the tokens in its subtree. Nodes are DOM elements keyed by node id, so a
// poll moves them instead of redrawing (evicted ones disappear, selection survives).
// What the snapshot counted but did not list shows as a hatched "+N nodes" block; a click
// on it, or on a node with such descendants, fetches the tree from there.

const FRESH_HIT_S = 3; // a node matched this recently is highlighted
const MIN_LABEL_PX = 13;
const START_COLUMN_PX = 84; // the start node's column: it holds no text of its own when it is the root

export class TreeView {
  constructor({ container, pathNav, summary, detail, onExpand }) {
    this.container = container;
    this.pathNav = pathNav;
    this.summary = summary;
    this.detail = detail;
    this.onExpand = onExpand;
    this.elements = new Map(); // key -> element
    this.nodes = new Map(); // id -> node of the last snapshot
    this.selected = null;
  }

  update(snap) {
    this.nodes = new Map(snap.nodes.map((n) => [n.id, n]));
    const children = new Map();
    for (const n of snap.nodes) {
      if (n.parent === null) continue;
      if (!children.has(n.parent)) children.set(n.parent, []);
      children.get(n.parent).push(n);
    }
    const depth = Math.max(1, ...snap.nodes.map((n) => n.depth + (n.hidden_nodes > 0 ? 1 : 0)));
    const box = { w: this.container.clientWidth, h: this.container.clientHeight, colW: 0 };
    box.colW = (box.w - START_COLUMN_PX) / depth;
    const seen = new Set();
    const start = snap.nodes[0];
    this.place(start, 0, box.h, children, box, seen, snap);
    for (const [key, el] of this.elements) {
      if (!seen.has(key)) { el.remove(); this.elements.delete(key); }
    }
    this.renderPath(snap.path);
    this.summary.textContent = `${snap.total_nodes} nodes · ${snap.total_tokens} tokens in the tree · ` +
      `snapshot ${(snap.took_s * 1e3).toFixed(2)} ms` + (snap.radix_cache === false ? " · radix cache disabled" : "");
    this.renderDetail();
  }

  place(node, y0, y1, children, box, seen, snap) {
    const x = node.depth === 0 ? 0 : START_COLUMN_PX + (node.depth - 1) * box.colW;
    const w = node.depth === 0 ? START_COLUMN_PX : box.colW;
    this.draw(String(node.id), node, x, y0, w, y1 - y0, seen, snap);
    const kids = children.get(node.id) || [];
    const total = kids.reduce((s, k) => s + k.subtree_tokens, 0) + node.hidden_tokens;
    if (total <= 0) return;
    let y = y0;
    for (const kid of kids) {
      const h = ((y1 - y0) * kid.subtree_tokens) / total;
      this.place(kid, y, y + h, children, box, seen, snap);
      y += h;
    }
    if (node.hidden_nodes > 0 && y1 - y >= 1) {
      const more = { id: null, parent: node.id, more: true, hidden_nodes: node.hidden_nodes, tokens: node.hidden_tokens };
      this.draw(`more-${node.id}`, more, START_COLUMN_PX + node.depth * box.colW, y, box.colW, y1 - y, seen, snap);
    }
  }

  draw(key, node, x, y, w, h, seen, snap) {
    if (h < 1) return;
    seen.add(key);
    let el = this.elements.get(key);
    if (!el) {
      el = document.createElement("div");
      el.className = "tree-node";
      el.addEventListener("click", () => this.clicked(el));
      el.addEventListener("dblclick", () => this.expand(el));
      this.container.appendChild(el);
      this.elements.set(key, el);
    }
    Object.assign(el.style, { left: `${x}px`, top: `${y}px`, width: `${w - 1}px`, height: `${h}px` });
    if (node.more) {
      el.className = "tree-node more";
      el.dataset.parentId = node.parent;
      el.textContent = h >= MIN_LABEL_PX ? `+${node.hidden_nodes} nodes, ${node.tokens} tok` : "";
      el.title = `${node.hidden_nodes} more nodes (${node.tokens} tokens) not listed: double-click to expand`;
      return;
    }
    const isRoot = node.id === snap.path[0];
    el.dataset.nodeId = node.id;
    el.dataset.tokens = node.tokens;
    el.dataset.depth = node.depth;
    el.dataset.hits = node.hits;
    el.dataset.lockRef = node.lock_ref;
    el.className = "tree-node" + (isRoot ? " root" : "") + (node.lock_ref > 0 ? " locked" : "") +
      (node.last_hit_s !== null && node.last_hit_s < FRESH_HIT_S ? " fresh-hit" : "") +
      (this.selected === node.id ? " selected" : "");
    const label = node.depth === 0 ? (isRoot ? `root ${node.subtree_tokens}` : `#${node.id}`)
      : `${node.tokens}` + (node.hits ? ` ×${node.hits}` : "");
    if (el.dataset.label !== label + node.text || el.dataset.h !== String(h >= MIN_LABEL_PX)) {
      el.dataset.label = label + node.text;
      el.dataset.h = String(h >= MIN_LABEL_PX);
      el.replaceChildren();
      if (h >= MIN_LABEL_PX) {
        const tok = document.createElement("span");
        tok.className = "tok";
        tok.textContent = label;
        el.append(tok, document.createTextNode(node.depth === 0 ? "" : oneLine(node.text)));
      }
    }
    el.title = isRoot ? "the root" : `${node.tokens} tokens · ${node.hits} hits · ${node.lock_ref} locks · ` +
      `accessed ${age(node.last_access_s)}\n${node.text}${node.text_is_prefix ? "…" : ""}`;
  }

  clicked(el) {
    if (el.dataset.nodeId === undefined) return this.expand(el);
    this.selected = Number(el.dataset.nodeId);
    for (const other of this.elements.values()) other.classList.toggle("selected", other === el);
    this.renderDetail();
    // A node whose descendants the snapshot only counted expands on click: the next
    // snapshot starts from it (the path above it stays in the breadcrumbs).
    const node = this.nodes.get(this.selected);
    if (node && node.depth > 0 && node.hidden_nodes > 0) this.expand(el);
  }

  expand(el) {
    const id = el.dataset.nodeId !== undefined ? Number(el.dataset.nodeId) : Number(el.dataset.parentId);
    this.onExpand(id);
  }

  renderPath(path) {
    this.pathNav.replaceChildren(...path.map((id, i) => {
      const a = document.createElement("a");
      a.textContent = i === 0 ? "root" : `#${id}`;
      a.addEventListener("click", () => this.onExpand(i === 0 ? null : id));
      return a;
    }));
  }

  renderDetail() {
    if (this.selected === null) return;
    const n = this.nodes.get(this.selected);
    if (!n) {
      this.detail.textContent = `Node #${this.selected} is not in this view (evicted, or below it).`;
      return;
    }
    this.detail.classList.remove("dim");
    this.detail.replaceChildren();
    const line = document.createElement("div");
    line.textContent = `#${n.id}: ${n.tokens} tokens · ${n.hits} hits · ${n.lock_ref} locks (running requests) · ` +
      `last access ${age(n.last_access_s)} · last hit ${n.last_hit_s === null ? "never" : age(n.last_hit_s)} · ` +
      `subtree ${n.subtree_nodes} nodes, ${n.subtree_tokens} tokens`;
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "expand from here";
    button.addEventListener("click", () => this.onExpand(n.id));
    line.append(button);
    const text = document.createElement("pre");
    text.textContent = n.text + (n.text_is_prefix ? " …" : "");
    this.detail.append(line, text);
  }
}

function oneLine(text) { return " " + text.replace(/\n/g, "⏎"); }

export function age(seconds) {
  if (seconds < 1) return "just now";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}
