"""OpenAI-compatible routes (docs/wire-protocol.md Part C): /v1/completions, /v1/chat/completions,
/v1/models, /v1/models/{model}.

A request becomes one `RequestSpec` per (prompt, sample) and runs through the same
TokenizerManager as /generate; the SGLang-shaped results are then re-shaped into OpenAI
objects. Chat prompts use the model's own chat template (or --chat-template); `tools` (and the
legacy `functions`) go through openai_tools.py (docs/tool-calling.md);
`response_format` json_object / json_schema becomes the `json_schema` constraint. `echo` on
/v1/completions prepends the prompt to the text (and its logprobs, the first one null, to the
logprobs); with echo, `max_tokens: 0` scores the prompt only (what evaluation harnesses use). Not
supported yet, and refused with 400 rather than ignored: other response formats, `suffix`,
multimodal content parts, `tools` on /v1/completions; an unknown field is a 400 too (request_fields.py).
The `model` field is not checked: there is one model.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from radixlm.runtime.errors import RequestError
from radixlm.runtime.http.chat_messages import chat_messages
from radixlm.runtime.http.common import read_json
from radixlm.runtime.http.generate_input import RequestSpec
from radixlm.runtime.http.model_info import served_model_name
from radixlm.runtime.http.openai_tools import ToolDeltas, ToolPlan, prompt_messages, tool_plan
from radixlm.runtime.http.request_fields import FieldPolicy, check_fields, openai_policy
from radixlm.runtime.http.request_lifecycle import collect, stream_response
from radixlm.runtime.sampling.sampling_params import SamplingParams
from radixlm.runtime.server.tokenizer_manager import ReqState, TokenizerManager
from radixlm.runtime.server.tokenizer_pool import INLINE_CHARS
from radixlm.runtime.server_args import ServerArgs
from radixlm.runtime.tools.formats import closed_objects
from radixlm.runtime.validation import Bool, Int, Rule

COMPLETIONS_DEFAULT_MAX_TOKENS = 16
# OpenAI name -> SamplingParams name, for the fields both endpoints accept.
SAMPLING_FIELDS = {
    "temperature": "temperature", "top_p": "top_p", "stop": "stop", "seed": "sampling_seed",
    "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty",
    "logit_bias": "logit_bias",
    # SGLang extras
    "top_k": "top_k", "min_p": "min_p", "min_tokens": "min_new_tokens",
    "repetition_penalty": "repetition_penalty", "stop_token_ids": "stop_token_ids",
    "stop_regex": "stop_regex", "no_stop_trim": "no_stop_trim", "ignore_eos": "ignore_eos",
    "skip_special_tokens": "skip_special_tokens", "regex": "regex", "json_schema": "json_schema",
    "ebnf": "ebnf",
    # radixlm's (docs/structured-output.md)
    "complete_within_budget": "complete_within_budget", "end_on_reject": "end_on_reject",
}
FINISH_REASONS = {"stop": "stop", "length": "length", "abort": "abort"}
# The routes' own fields (openapi_spec.py describes them from here; the SAMPLING_FIELDS are
# SamplingParams').
_COMMON_RULES: dict[str, Rule] = {"n": Int(lo=1, hi=128), "stream": Bool()}
COMPLETION_RULES: dict[str, Rule] = {
    **_COMMON_RULES,
    "max_tokens": Int(lo=0, description="default 16; 0 only with echo (scores the prompt)"),
    "logprobs": Int(lo=0, hi=20),
    "echo": Bool(description="prepend the prompt (and its logprobs)"),
}
CHAT_RULES: dict[str, Rule] = {
    **_COMMON_RULES,
    "max_tokens": Int(lo=0, description="default: as much as fits the context"),
    "max_completion_tokens": Int(lo=0, description="overrides max_tokens"),
    "logprobs": Bool(),
    "top_logprobs": Int(lo=0, hi=20, description="only with logprobs: true (else a 400)"),
}
_COMMON_FIELDS = {"n", "stream", "stream_options", "response_format", *SAMPLING_FIELDS}
TOOL_FIELDS = {"tools", "tool_choice", "parallel_tool_calls", "functions", "function_call"}
COMPLETION_FIELDS = openai_policy(
    "/v1/completions", _COMMON_FIELDS | {"prompt", "max_tokens", "logprobs", "echo", "suffix"},
    unsupported={"best_of", *TOOL_FIELDS}, defaults={"best_of": (1,)},
)
CHAT_FIELDS = openai_policy(
    "/v1/chat/completions",
    _COMMON_FIELDS | TOOL_FIELDS | {"messages", "max_tokens", "max_completion_tokens", "logprobs", "top_logprobs"},
    unsupported={"audio", "modalities", "prediction", "web_search_options",
                 "reasoning_effort", "verbosity"},
    defaults={"modalities": (["text"],)},
)


def response_format_schema(fmt: Any) -> str | None:
    """The `json_schema` sampling parameter a response_format asks for (wire-protocol Part C)."""
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return json.dumps({"type": "object"})
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise ValueError("response_format json_schema needs json_schema.schema (an object)")
        strict = spec.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise ValueError(f"response_format json_schema.strict must be a boolean (got {strict!r})")
        return json.dumps(closed_objects(spec["schema"]) if strict else spec["schema"])
    raise ValueError(f"response_format {kind or fmt!r} is not supported (use text, json_object or json_schema)")


def _check_unsupported(body: dict) -> None:
    if body.get("suffix"):
        raise ValueError("suffix is not supported yet")


def _sampling_params(body: dict, max_tokens: int | None, max_tokens_name: str,
                     tools: ToolPlan | None = None) -> SamplingParams:
    d = {ours: body[theirs] for theirs, ours in SAMPLING_FIELDS.items() if body.get(theirs) is not None}
    names = {ours: theirs for theirs, ours in SAMPLING_FIELDS.items()}  # errors name the client's field
    if max_tokens is not None:
        d["max_new_tokens"] = max_tokens
        names["max_new_tokens"] = max_tokens_name
    schema = response_format_schema(body.get("response_format"))
    if tools is not None and tools.constrains:
        for key, value in tools.constraint(schema).items():
            if key == "stop":  # the call's end marker, after the client's own stops
                value = _stops(d.get("stop")) + value
            else:
                names[key] = "tools"
            d[key] = value
    elif schema is not None:
        d["json_schema"] = schema
        names["json_schema"] = "response_format"
    return SamplingParams.from_dict(d, names)


def _stops(stop: Any) -> list:
    return [] if stop is None else [stop] if isinstance(stop, str) else list(stop)


def _field(body: dict, rules: dict[str, Rule], name: str, default: Any = None) -> Any:
    return rules[name].check(name, body.get(name), default)


def _max_tokens(body: dict, rules: dict[str, Rule], names: tuple[str, ...]) -> tuple[int | None, str]:
    """The first of OpenAI's length fields `names` that is given (None if all are absent or
    null), and its name."""
    for name in names:
        if (v := _field(body, rules, name)) is not None:
            return v, name
    return None, names[-1]


def _streaming(body: dict) -> tuple[bool, bool]:
    """(stream, include_usage); OpenAI's 400 for stream_options without stream: true."""
    stream = _field(body, _COMMON_RULES, "stream", False)
    opts = body.get("stream_options")
    if opts is not None and not stream:
        raise ValueError("stream_options needs stream: true (got stream_options without it)")
    if opts is not None and not isinstance(opts, dict):
        raise ValueError(f"stream_options must be an object like {{\"include_usage\": true}} (got {opts!r})")
    return stream, bool((opts or {}).get("include_usage"))


def _finish(meta: dict) -> tuple[str | None, Any]:
    fr = meta.get("finish_reason")
    if not fr:
        return None, None
    return FINISH_REASONS.get(fr["type"], fr["type"]), fr.get("matched")


def _usage(states: list[ReqState], n: int) -> dict:
    metas = [s.builder.result()["meta_info"] for s in states]
    firsts = metas[::n]  # one sample per prompt: the prompt is counted once
    prompt = sum(m["prompt_tokens"] for m in firsts)
    completion = sum(m["completion_tokens"] for m in metas)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": sum(m["cached_tokens"] for m in firsts)}}


def completion_logprobs(entries: list, top: list | None, offset: int) -> dict:
    tokens = [e[2] or "" for e in entries]
    offsets, pos = [], offset
    for t in tokens:
        offsets.append(pos)
        pos += len(t)
    return {
        "tokens": tokens,
        "token_logprobs": [e[0] for e in entries],
        "top_logprobs": [{x[2] or "": x[0] for x in t} if t else None for t in top] if top else None,
        "text_offset": offsets,
    }


def _with_prompt_logprobs(meta: dict, entries: list, top: list | None) -> tuple[list, list | None]:
    """Echo: the prompt's logprob entries (the first is null) before the output's."""
    p_entries = meta.get("input_token_logprobs") or []
    if top is None and not meta.get("input_top_logprobs"):
        return p_entries + entries, None
    p_top = meta.get("input_top_logprobs") or [None] * len(p_entries)
    return p_entries + entries, p_top + (top or [])


def chat_logprobs(entries: list, top: list | None) -> dict:
    def item(e: list) -> dict:
        token = e[2] or ""
        return {"token": token, "logprob": e[0], "bytes": list(token.encode())}

    tops = top or [None] * len(entries)
    return {"content": [{**item(e), "top_logprobs": [item(x) for x in (t or [])]}
                        for e, t in zip(entries, tops, strict=True)]}


class _StreamRenderer:
    """OpenAI chunks from cumulative-text events: text deltas per choice, usage at the end."""

    def __init__(self, api: OpenAIApi, states: list[ReqState], call: _Call, want_logprobs: bool) -> None:
        self.api, self.states, self.n, self.chat = api, states, call.n, call.chat
        self.include_usage, self.want_logprobs, self.echoes = call.include_usage, want_logprobs, call.echoes
        # chat with tools: each choice's text goes through its own call parser
        self.tools: list[ToolDeltas | None] = [call.tools.stream() if call.tools else None for _ in states]
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.sent = [0] * len(states)  # characters of each choice already sent
        self.started = [False] * len(states)

    def _chunk(self, choice: dict) -> dict:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created,
                "model": self.api.model_name, "choices": [choice]}

    def event(self, index: int, event: dict) -> list[dict]:
        meta = event["meta_info"]
        delta = event["text"][self.sent[index]:]
        offset = self.sent[index]
        self.sent[index] = len(event["text"])
        reason, matched = _finish(meta)
        entries = meta.get("output_token_logprobs") or []
        top = meta.get("output_top_logprobs")
        if self.echoes is not None:  # completions only: the prompt leads the first chunk
            echo = self.echoes[index]
            if not self.started[index]:
                self.started[index] = True
                delta = echo + delta
                entries, top = _with_prompt_logprobs(meta, entries, top)
            else:
                offset += len(echo)
        chunks = []
        if self.chat and not self.started[index]:
            self.started[index] = True
            chunks.append(self._chunk({"index": index, "delta": {"role": "assistant", "content": ""},
                                       "logprobs": None, "finish_reason": None}))
        if (tools := self.tools[index]) is not None:
            return chunks + self._tool_chunks(index, tools, event["text"], reason, matched)
        if not delta and reason is None:
            return chunks
        if self.chat:
            lp = chat_logprobs(entries, top) if self.want_logprobs else None
            choice = {"index": index, "delta": {"content": delta} if delta else {}, "logprobs": lp}
        else:
            lp = completion_logprobs(entries, top, offset) if self.want_logprobs else None
            choice = {"index": index, "text": delta, "logprobs": lp}
        choice.update(finish_reason=reason, matched_stop=matched)
        chunks.append(self._chunk(choice))
        return chunks

    def _tool_chunks(self, index: int, tools: ToolDeltas, text: str, reason: str | None,
                     matched: Any) -> list[dict]:
        """One chunk per content or call delta; the finish_reason on the last (logprobs are
        not split along call boundaries, so a tool-calling stream carries none)."""
        chunks = [self._chunk({"index": index, "delta": d, "logprobs": None, "finish_reason": None})
                  for d in tools.feed(text, final=reason is not None)]
        if reason is not None:
            chunks.append(self._chunk({"index": index, "delta": {}, "logprobs": None,
                                       "finish_reason": tools.finish_reason(reason), "matched_stop": matched}))
        return chunks

    def tail(self) -> list[dict]:
        if not self.include_usage:
            return []
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return [{"id": self.id, "object": obj, "created": self.created, "model": self.api.model_name,
                 "choices": [], "usage": _usage(self.states, self.n)}]


class _Call(NamedTuple):
    """One OpenAI call, parsed: the specs to run and how to answer."""

    specs: list[RequestSpec]
    n: int
    chat: bool
    stream: bool
    include_usage: bool
    echoes: list[str] | None = None  # completions with echo: each spec's prompt text
    tools: ToolPlan | None = None  # chat with tools: how calls are answered


class OpenAIApi:
    def __init__(self, tm: TokenizerManager, args: ServerArgs) -> None:
        self.tm = tm
        self.args = args
        self.model_name = served_model_name(args)
        self.created = int(time.time())

    async def _parsed(self, request: Request, build: Callable[[dict], _Call]) -> _Call:
        """The call `build` makes of the body. Over INLINE_CHARS bytes, decoding, checking,
        templating and tokenizing the prompt all run in the tokenizer pool's worker."""
        return await read_json(request, self.args.max_body_size, self.tm.pool.run, build, INLINE_CHARS)

    def _checked(self, body: Any, fields: FieldPolicy) -> dict:
        if not isinstance(body, dict):
            raise ValueError("the request body must be a JSON object")
        check_fields(body, fields)
        _check_unsupported(body)
        return body

    # ---- completions --------------------------------------------------------------------
    async def completions(self, request: Request) -> Response:
        return await self._run(request, await self._parsed(request, self._completion_call))

    def _completion_call(self, body: Any) -> _Call:
        body = self._checked(body, COMPLETION_FIELDS)
        prompts = _completion_prompts(body.get("prompt"))
        echo = _field(body, COMPLETION_RULES, "echo", False)
        max_tokens, name = _max_tokens(body, COMPLETION_RULES, ("max_tokens",))
        if max_tokens == 0 and not echo:  # nothing to return: only echo makes 0 useful
            raise ValueError("max_tokens must be >= 1 unless echo is true (got 0)")
        params = _sampling_params(body, COMPLETIONS_DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens, name)
        n = _field(body, COMPLETION_RULES, "n", 1)
        logprobs = _field(body, COMPLETION_RULES, "logprobs")
        specs = [
            RequestSpec(rid=uuid.uuid4().hex, params=params.for_choice(j),
                        text=p if isinstance(p, str) else None,
                        input_ids=p if isinstance(p, list) else None,
                        return_logprob=logprobs is not None, top_logprobs_num=logprobs or 0,
                        return_text_in_logprobs=True, logprob_start_len=0 if echo else -1,
                        field_names={"max_new_tokens": name, "input_ids": "prompt"})
            for p in prompts for j in range(n)
        ]
        echoes = [self._prompt_text(p) for p in prompts for _ in range(n)] if echo else None
        return _Call(specs, n, False, *_streaming(body), echoes=echoes)

    def _prompt_text(self, prompt: str | list[int]) -> str:
        return prompt if isinstance(prompt, str) else self.tm.tokenizer.decode(prompt)

    # ---- chat ---------------------------------------------------------------------------
    async def chat_completions(self, request: Request) -> Response:
        return await self._run(request, await self._parsed(request, self._chat_call))

    def _chat_call(self, body: Any) -> _Call:
        body = self._checked(body, CHAT_FIELDS)
        max_tokens, name = _max_tokens(body, CHAT_RULES, ("max_completion_tokens", "max_tokens"))
        want = _field(body, CHAT_RULES, "logprobs", False)
        top = _field(body, CHAT_RULES, "top_logprobs")
        if top is not None and not want:  # OpenAI's 400: top_logprobs alone returns nothing
            raise ValueError("top_logprobs needs logprobs: true (got top_logprobs without it)")
        n = _field(body, CHAT_RULES, "n", 1)
        streaming = _streaming(body)  # before the prompt: a bad field is refused before tokenizing
        tools = tool_plan(body, self.tm.tool_setup)
        messages, template_args = prompt_messages(chat_messages(body.get("messages")), tools, self.tm.tool_setup)
        text = self.tm.render_chat(messages, **template_args)
        ids = self.tm.pool.token_ids(text, add_special_tokens=False)
        if max_tokens is None:  # as much as fits, like OpenAI (bounded by the context and the pool)
            room = min(self.tm.scheduler_info.get("context_len", 0), self.tm.scheduler_info.get("kv_pool_size", 0))
            max_tokens = max(room - len(ids), 1)
        params = _sampling_params(body, max_tokens, name, tools)
        specs = [RequestSpec(rid=uuid.uuid4().hex, params=params.for_choice(j), input_ids=ids,
                             return_logprob=want, top_logprobs_num=top or 0, return_text_in_logprobs=True,
                             field_names={"max_new_tokens": name, "input_ids": "messages"})
                 for j in range(n)]
        return _Call(specs, n, True, *streaming, tools=tools)

    # ---- shared -------------------------------------------------------------------------
    async def _run(self, request: Request, call: _Call) -> Response:
        want_logprobs = call.specs[0].return_logprob
        if call.stream:
            return await stream_response(request, self.tm, call.specs, lambda states: _StreamRenderer(
                self, states, call, want_logprobs))
        states = await collect(request, self.tm, call.specs)
        if states is None:
            return Response(status_code=499)
        return JSONResponse(self._response(states, call, want_logprobs))

    def _response(self, states: list[ReqState], call: _Call, want_logprobs: bool) -> dict:
        n, chat, echoes = call.n, call.chat, call.echoes
        choices = []
        for i, state in enumerate(states):
            result = state.builder.result()
            meta = result["meta_info"]
            reason, matched = _finish(meta)
            entries, top = meta.get("output_token_logprobs") or [], meta.get("output_top_logprobs")
            choice: dict[str, Any] = {"index": i}
            if chat:
                message = {"role": "assistant", "content": result["text"], "tool_calls": None}
                if call.tools is not None:
                    message, reason = call.tools.message(result["text"], reason)
                choice["message"] = {**message, "reasoning_content": None}
                choice["logprobs"] = chat_logprobs(entries, top) if want_logprobs else None
            else:
                if echoes is not None:
                    entries, top = _with_prompt_logprobs(meta, entries, top)
                choice["text"] = (echoes[i] if echoes else "") + result["text"]
                choice["logprobs"] = completion_logprobs(entries, top, 0) if want_logprobs else None
            choice.update(finish_reason=reason, matched_stop=matched)
            choices.append(choice)
        prefix, obj = ("chatcmpl-", "chat.completion") if chat else ("cmpl-", "text_completion")
        return {"id": prefix + uuid.uuid4().hex, "object": obj, "created": int(time.time()),
                "model": self.model_name, "choices": choices, "usage": _usage(states, n)}

    # ---- models -------------------------------------------------------------------------
    def _card(self) -> dict:
        return {"id": self.model_name, "object": "model", "created": self.created, "owned_by": "radixlm",
                "root": self.model_name, "parent": None,
                "max_model_len": self.tm.scheduler_info.get("context_len"), **self.tm.tool_setup.metadata()}

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [self._card()]})

    async def model(self, request: Request) -> Response:
        name = request.path_params["model"]
        if name != self.model_name:
            raise RequestError.of(404, f"the model {name!r} does not exist; this server serves {self.model_name!r}",
                            code="model_not_found")
        return JSONResponse(self._card())


def _completion_prompts(prompt: Any) -> list[str | list[int]]:
    def is_ids(x: Any) -> bool:
        return isinstance(x, list) and bool(x) and all(isinstance(t, int) and not isinstance(t, bool) for t in x)

    if isinstance(prompt, str):
        return [prompt]
    if is_ids(prompt):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) or is_ids(p) for p in prompt):
        return list(prompt)
    raise ValueError("prompt must be a string, a list of strings, a list of token ids or a list of such lists")


def openai_routes(tm: TokenizerManager, args: ServerArgs) -> list[Route]:
    api = OpenAIApi(tm, args)
    return [
        Route("/v1/completions", api.completions, methods=["POST"]),
        Route("/v1/chat/completions", api.chat_completions, methods=["POST"]),
        Route("/v1/models", api.models, methods=["GET"]),
        Route("/v1/models/{model:path}", api.model, methods=["GET"]),
    ]
