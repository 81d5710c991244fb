"""The web view (docs/architecture.md §9): a live page at `/` and the JSON routes behind it.

    GET  /                  the page (static/index.html)
    GET  /static/<file>     its script and style, files of this package (no build step, no CDN)
    GET  /cache/tree        a bounded snapshot of the radix tree (?node=&depth=&max_nodes=&min_tokens=)
    GET  /stats             counters, KV pool use, one row per request (scheduler/live_stats.py)
    POST /token_pieces      a prompt's tokens with the text each one adds (the playground's marks)

The page and its files hold no data, so they are served without the API key (a browser
cannot send a header when it navigates to a URL); the page asks for the key and sends it on
every data route, which stay behind the key like every other route (common.GuardMiddleware,
`PAGE_PATHS`). Nothing is computed unless a client asks: the page polls `/stats` and
`/cache/tree` a few times a second while it is visible, each poll is one message answered
by the scheduler between two steps (about a millisecond, docs/benchmarks.md), concurrent
`/stats` polls share one answer, and node previews are decoded here, not in the scheduler.
"""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from radixlm.runtime.errors import RequestError
from radixlm.runtime.http.chat_messages import chat_messages
from radixlm.runtime.http.common import read_json
from radixlm.runtime.mem_cache.tree_snapshot import NodeView, TreeQuery, TreeSnapshot
from radixlm.runtime.server.tokenizer_manager import TokenizerManager
from radixlm.runtime.server.tokenizer_pool import INLINE_CHARS
from radixlm.runtime.server_args import ServerArgs
from radixlm.runtime.validation import Bool, Int, ListOf, Str

STATIC_DIR = Path(__file__).parent / "static"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
STATIC_FILES = sorted(p.name for p in STATIC_DIR.iterdir() if p.suffix in MEDIA_TYPES and p.name != "index.html")
# Served without the API key: the page and its files (they hold no data).
PAGE_PATHS = frozenset({"/", *(f"/static/{name}" for name in STATIC_FILES)})

# ?name=value of /cache/tree; TreeQuery's defaults are the page's first view.
TREE_PARAMS: dict[str, Int] = {
    "node": Int(lo=0, nullable=False, description="start from this node id (default: the root)"),
    "depth": Int(lo=1, hi=16, nullable=False, description="levels below the start node (default 4)"),
    "max_nodes": Int(lo=1, hi=2000, nullable=False, description="nodes listed at most (default 256)"),
    "min_tokens": Int(lo=0, nullable=False,
                      description="children whose subtree holds fewer tokens are counted, not listed (default 0)"),
}
_INTEGER = re.compile(r"-?[0-9]{1,18}")

MAX_PIECE_TOKENS = 4096
PIECE_CONTEXT = 4  # tokens decoded before each one: enough to finish any multi-byte character
TOKEN_PIECES_RULES = {
    "text": Str(nullable=False, description="a prompt, tokenized as /generate tokenizes it"),
    "input_ids": ListOf(item=Int(lo=0), max_items=MAX_PIECE_TOKENS, nullable=False,
                        description="token ids (each below the tokenizer's vocabulary size)"),
    "add_special_tokens": Bool(description="for text: as /generate does (default true)"),
    "skip_special_tokens": Bool(description="drop special tokens' text, as /generate's text does (default false)"),
}
PROMPT_FIELDS = ("text", "input_ids", "messages")


class PreviewDecoder:
    """Node previews (token ids) to text, remembering the last `size` decodes: a page polling
    the same tree costs one batched decode of what changed."""

    def __init__(self, tokenizer, size: int = 8192) -> None:
        self.tokenizer = tokenizer
        self.size = size
        self.texts: OrderedDict[tuple[int, ...], str] = OrderedDict()

    def decode(self, previews: list[list[int]]) -> list[str]:
        keys = [tuple(p) for p in previews]
        missing = list(dict.fromkeys(k for k in keys if k not in self.texts))
        if missing:
            for key, text in zip(missing, self.tokenizer.batch_decode([list(k) for k in missing])):
                self.texts[key] = text
        for key in keys:
            self.texts.move_to_end(key)
        while len(self.texts) > self.size:
            self.texts.popitem(last=False)
        return [self.texts[k] for k in keys]


def token_pieces(tokenizer, ids: list[int], skip_special_tokens: bool = False) -> list[str]:
    """The text each token adds, so that the pieces joined are the decoded text. A token that
    ends inside a multi-byte character adds nothing; the one that completes it adds it whole."""
    before = [ids[max(0, i - PIECE_CONTEXT):i] for i in range(len(ids))]
    after = [ids[max(0, i - PIECE_CONTEXT):i + 1] for i in range(len(ids))]
    decoded = tokenizer.batch_decode(before + after, skip_special_tokens=skip_special_tokens)
    pieces = []
    for head, text in zip(decoded[:len(ids)], decoded[len(ids):]):
        head = head.rstrip("\ufffd")  # a character the token before left unfinished
        piece = text[len(head):] if text.startswith(head) else text
        pieces.append(piece.rstrip("\ufffd"))
    return pieces


class WebView:
    def __init__(self, tm: TokenizerManager, args: ServerArgs) -> None:
        self.tm = tm
        self.args = args
        self.previews = PreviewDecoder(tm.tokenizer) if tm is not None else None

    async def page(self, request: Request) -> Response:
        return _static_response("index.html")

    async def static(self, request: Request) -> Response:
        return _static_response(request.url.path.removeprefix("/static/"))

    async def cache_tree(self, request: Request) -> Response:
        query = parse_tree_query(request.query_params.multi_items())
        snapshot = await self.tm.cache_tree(query)
        if snapshot is None:
            raise RequestError.of(404, f"node {query.node_id} is not in the radix tree (evicted, or never "
                                       "was): start again from the root")
        return JSONResponse(self.tree_json(snapshot))

    def tree_json(self, snap: TreeSnapshot) -> dict[str, Any]:
        views = snap.views()
        texts = self.previews.decode([v.preview for v in views])
        nodes = []
        for view, text in zip(views, texts):
            node = dict(zip(NodeView._fields, view))
            del node["preview"]
            node["text"] = text
            node["text_is_prefix"] = len(view.preview) < view.tokens  # the preview is cut
            nodes.append(node)
        fields = {f.name: getattr(snap, f.name) for f in dataclasses.fields(snap) if f.name != "nodes"}
        return {**fields, "nodes": nodes}

    async def stats(self, request: Request) -> Response:
        return JSONResponse(dataclasses.asdict(await self.tm.live_stats()))

    async def token_pieces(self, request: Request) -> Response:
        # Parsed and tokenized in the tokenizer pool's worker when large, as /generate does.
        return JSONResponse(await read_json(request, self.args.max_body_size, self.tm.pool.run,
                                            self._pieces, INLINE_CHARS))

    def _pieces(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ValueError('the body must be an object: {"text": ...}, {"input_ids": [...]} or {"messages": [...]}')
        unknown = sorted(set(body) - set(TOKEN_PIECES_RULES) - {"messages"})
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; expected: "
                             f"{', '.join([*PROMPT_FIELDS, 'add_special_tokens', 'skip_special_tokens'])}")
        given = [name for name in PROMPT_FIELDS if name in body]
        if len(given) != 1:
            raise ValueError(f"send exactly one of text, input_ids, messages (got {', '.join(given) or 'none'})")
        text, ids = self._prompt(body, given[0])
        skip = TOKEN_PIECES_RULES["skip_special_tokens"].check("skip_special_tokens",
                                                               body.get("skip_special_tokens"), False)
        return {"input_ids": ids, "pieces": token_pieces(self.tm.tokenizer, ids, skip), "text": text}

    def _prompt(self, body: dict, field: str) -> tuple[str, list[int]]:
        """(the prompt's text, its token ids), tokenized as /generate and the chat route do."""
        tokenizer = self.tm.tokenizer
        if field == "input_ids":
            ids = TOKEN_PIECES_RULES["input_ids"].check("input_ids", body["input_ids"])
            vocab = len(tokenizer)
            if any(t >= vocab for t in ids):
                raise ValueError(f"input_ids must be < {vocab}, the tokenizer's vocabulary size")
            return tokenizer.decode(ids), ids
        if field == "messages":
            text = self.tm.render_chat(chat_messages(body["messages"]))
            ids = self.tm.pool.token_ids(text, add_special_tokens=False)
        else:
            text = TOKEN_PIECES_RULES["text"].check("text", body["text"])
            special = TOKEN_PIECES_RULES["add_special_tokens"].check("add_special_tokens",
                                                                     body.get("add_special_tokens"), True)
            ids = self.tm.pool.token_ids(text, add_special_tokens=special)
        if len(ids) > MAX_PIECE_TOKENS:
            raise ValueError(f"the prompt has {len(ids)} tokens; at most {MAX_PIECE_TOKENS} are shown")
        return text, ids

    def routes(self) -> list[Route]:
        return [
            Route("/", self.page, methods=["GET"]),
            *(Route(f"/static/{name}", self.static, methods=["GET"]) for name in STATIC_FILES),
            Route("/cache/tree", self.cache_tree, methods=["GET"]),
            Route("/stats", self.stats, methods=["GET"]),
            Route("/token_pieces", self.token_pieces, methods=["POST"]),
        ]


def parse_tree_query(items: list[tuple[str, str]]) -> TreeQuery:
    """A TreeQuery from the query string; ValueError (400) naming a bad or unknown parameter."""
    values: dict[str, int] = {}
    for name, raw in items:
        rule = TREE_PARAMS.get(name)
        if rule is None:
            raise ValueError(f"unknown query parameter {name!r}; expected: {', '.join(TREE_PARAMS)}")
        if not _INTEGER.fullmatch(raw):
            raise ValueError(f"{name} must be an integer (got {raw!r})")
        values[name] = rule.check(name, int(raw))
    return TreeQuery(**{("node_id" if k == "node" else k): v for k, v in values.items()})


def _static_response(name: str) -> Response:
    # Read per request (a few kB): an edited file shows on reload; no-cache keeps browsers honest.
    path = STATIC_DIR / name
    return Response(path.read_bytes(), media_type=MEDIA_TYPES[path.suffix],
                    headers={"Cache-Control": "no-cache"})


def web_view_routes(tm: TokenizerManager, args: ServerArgs) -> list[Route]:
    return WebView(tm, args).routes()
