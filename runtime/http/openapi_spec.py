"""The OpenAPI 3.1 description of the server's HTTP API, served at `GET /openapi.json`.

    spec = build_openapi(version="0.1.0", api_key=True, max_body_size=16 << 20)

It describes what the validators accept, not what we wish they did. Most request fields are
checked by a rule (runtime/validation.py) in a table beside their validator: the sampling
parameters' FIELD_RULES, generate_input's FIELD_RULES, openai_api's COMPLETION_RULES and
CHAT_RULES; their schemas here are those rules' own. What has no rule (prompts, messages,
response formats, the grammar constraints, rid) is written here and must follow its
validator by hand; tests/server/test_openapi_fuzz.py fuzzes the server against the whole.
Checks that need the model or the request as a whole are in the descriptions instead (the
prompt plus max_new_tokens must fit the context, token ids must be in the vocabulary, at
most one constraint). An unknown top-level key is a 400 (request_fields.py), and so is an
unknown `sampling_params` key.
"""

from __future__ import annotations

import copy
from typing import Any

from radixlm.runtime.http import chat_messages, generate_input
from radixlm.runtime.http.common import FILE_FIELDS, OPEN_PATHS
from radixlm.runtime.http.openai_api import (
    CHAT_FIELDS,
    CHAT_RULES,
    COMPLETION_FIELDS,
    COMPLETION_RULES,
    SAMPLING_FIELDS,
)
from radixlm.runtime.http.request_fields import GENERATE_FIELDS, FieldPolicy
from radixlm.runtime.http.web_view import (
    MEDIA_TYPES,
    PAGE_PATHS,
    STATIC_FILES,
    TOKEN_PIECES_RULES,
    TREE_PARAMS,
)
from radixlm.runtime.sampling import sampling_params
from radixlm.runtime.server_args import TOOL_CALL_PARSERS
from radixlm.runtime.tools.spec import MAX_TOOLS
from radixlm.runtime.validation import Rule, Schema


def build_openapi(version: str, api_key: bool, max_body_size: int) -> dict:
    """The whole document; `api_key`: whether the server was started with --api-key."""
    spec = {
        "openapi": "3.1.0",
        "info": {
            "title": "radixlm",
            "version": version,
            "description": "SGLang-native and OpenAI-compatible LLM serving API. Every error is a JSON body "
                           "{\"error\": {\"message\", \"type\", \"code\"}}; request bodies over "
                           f"{max_body_size} bytes are refused with 413.",
        },
        "paths": copy.deepcopy(_paths()),  # aliases share objects; security edits below must not
        "components": {"schemas": _schemas(), "responses": _error_responses()},
    }
    if api_key:
        spec["components"]["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
        spec["security"] = [{"apiKey": []}]
        for path, item in spec["paths"].items():
            for op in item.values():
                op["responses"]["401"] = _ref_response("Unauthorized")
                if path in OPEN_PATHS or path in PAGE_PATHS:
                    op["security"] = []
                    del op["responses"]["401"]
    return spec


# ---- small builders ---------------------------------------------------------------------

def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _ref_response(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


def _nullable(schema: Schema) -> Schema:
    """`null` is accepted and means the default (SamplingParams.from_dict, body.get)."""
    return {"anyOf": [schema, {"type": "null"}]}


def _int(lo: int | None = None, hi: int | None = None, **extra: Any) -> Schema:
    s: Schema = {"type": "integer", **extra}
    if lo is not None:
        s["minimum"] = lo
    if hi is not None:
        s["maximum"] = hi
    return s


def _list(items: Schema, min_items: int = 0, max_items: int | None = None) -> Schema:
    s: Schema = {"type": "array", "items": items}
    if min_items:
        s["minItems"] = min_items
    if max_items is not None:
        s["maxItems"] = max_items
    return s


def _rule_schemas(rules: dict[str, Rule]) -> dict[str, Schema]:
    return {name: rule.schema() for name, rule in rules.items()}


def _per_prompt(schema: Schema, what: str) -> Schema:
    """A value shared by the batch, or a list with one entry per prompt (generate_input._per_item);
    `schema` allows null, which means the default, alone or as an entry."""
    return {"anyOf": [schema, _list(schema)], "description": f"{what}; or a list, one per prompt"}


def _no_file_fields() -> dict[str, Schema]:
    """Top-level fields naming a file, URL or code to load: 400 unless null (http_common)."""
    return {name: {"type": "null", "description": "refused unless null: the server opens no files"}
            for name in sorted(FILE_FIELDS)}


def _policy_fields(policy: FieldPolicy) -> dict[str, Schema]:
    """The fields a request_fields policy accepts beyond those the endpoint reads: inert ones
    (any value, ignored) and unsupported ones (only empty; a value is a 400)."""
    out: dict[str, Schema] = {name: {"description": "accepted and ignored"} for name in sorted(policy.inert)}
    for name in sorted(policy.unsupported - FILE_FIELDS):
        out[name] = {"type": "null", "description": "not supported: 400 unless null or empty"}
        if name in policy.defaults:  # also accepted at its protocol default
            out[name] = {"enum": [None, *policy.defaults[name]],
                         "description": "not supported: 400 unless null, empty or the default"}
    return out


def _json_body(schema: Schema) -> Schema:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _json_ok(schema: Schema, description: str = "OK") -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: Schema, errors: tuple[str, ...], body: Schema | None = None) -> Schema:
    op: Schema = {"summary": summary, "responses": {"200": ok}}
    for name in errors:
        op["responses"][ERROR_STATUS[name]] = _ref_response(name)
    if body is not None:
        op["requestBody"] = body
    return op


# ---- errors -------------------------------------------------------------------------------

ERROR_STATUS = {"BadRequest": "400", "Unauthorized": "401", "NotFound": "404", "TooLarge": "413",
                "UnsupportedMediaType": "415", "Unavailable": "503"}
ERROR_TEXT = {
    "BadRequest": "Bad input (the message names the field and what to send instead)",
    "Unauthorized": "Missing or wrong API key",
    "NotFound": "No such route, model, or request in flight (/abort_request)",
    "TooLarge": "The request body exceeds --max-body-size",
    "UnsupportedMediaType": "A request body whose Content-Type is not JSON",
    "Unavailable": "Starting, shutting down or overloaded; retry after the Retry-After header",
}
BODY_ERRORS = ("BadRequest", "TooLarge", "UnsupportedMediaType", "Unavailable")


def _error_responses() -> Schema:
    return {name: _json_ok(_ref("Error"), ERROR_TEXT[name]) for name in ERROR_STATUS}


def _error_schema() -> Schema:
    detail = {
        "type": "object",
        "required": ["message", "type", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "code": {"type": ["integer", "string"]}, "retryable": {"type": "boolean"}},
    }
    return {"type": "object", "required": ["error"], "properties": {"error": detail}}


# ---- request schemas ----------------------------------------------------------------------

def _token_ids(min_items: int = 0) -> Schema:
    return _list(_int(0, description="a token id (< the vocabulary size)"), min_items=min_items)


def _constraint_fields() -> dict[str, Schema]:
    """The grammar constraints: checked when compiled (runtime/constrained), so no rule."""
    return {
        "regex": _nullable({"type": "string", "description": "\"\" means none"}),
        "json_schema": _nullable({"type": ["string", "object"],
                                  "description": "a JSON schema (as a string, or an object); \"\" means none"}),
        "ebnf": _nullable({"type": "string", "description": "a context-free grammar (SGLang's EBNF: "
                           "root ::= ...); \"\" means none"}),
        "structural_tag": _nullable({"type": ["string", "object"],
                                     "description": "SGLang's structural_tag: free text, then constrained "
                                                    "structures after each trigger (docs/structured-output.md)"}),
        "choices": _nullable(_list({"type": "string", "minLength": 1}, min_items=1)),
    }


def _sampling_fields() -> dict[str, Schema]:
    """Every SamplingParams field, by its own name."""
    return {**_rule_schemas(sampling_params.FIELD_RULES), **_constraint_fields()}


def _sampling_params() -> Schema:
    return {"type": "object", "properties": _sampling_fields(), "additionalProperties": False,
            "description": "At most one of regex, json_schema, ebnf, choices. The prompt plus max_new_tokens "
                           "must fit the context length and the KV pool."}


def _generate_fields() -> dict[str, Schema]:
    """generate_input's own fields; those it reads per prompt may be a list, one per prompt."""
    out = {}
    for name, rule in generate_input.FIELD_RULES.items():
        schema = rule.schema()
        out[name] = _per_prompt(schema, rule.description) if name in generate_input.PER_PROMPT else schema
    return out


def _generate_request() -> Schema:
    prompts = {
        "text": {"anyOf": [{"type": "string"}, _list({"type": "string"}, min_items=1)],
                 "description": "a prompt, or a non-empty list of prompts (a batch)"},
        "input_ids": {"anyOf": [_token_ids(1), _list(_token_ids(1), min_items=1)],
                      "description": "token ids, or a list of such lists (a batch)"},
    }
    return {
        "type": "object",
        "oneOf": [{"required": ["text"]}, {"required": ["input_ids"]}],
        "additionalProperties": False,
        "properties": {
            **_policy_fields(GENERATE_FIELDS),
            **_no_file_fields(),
            **prompts,
            **_generate_fields(),
            "rid": _nullable({"anyOf": [{"type": "string"}, _list({"type": "string"})],
                              "description": "request id(s); a string is a prefix for a batch"}),
            "sampling_params": _per_prompt(_nullable(_ref("SamplingParams")), "sampling parameters"),
        },
    }


def _openai_common(policy: FieldPolicy, rules: dict[str, Rule]) -> dict[str, Schema]:
    """Fields of an OpenAI route (openai_api.py): `rules` are its own, the sampling fields are
    SamplingParams' under their OpenAI names. An unknown key is a 400."""
    sampling = _sampling_fields()
    return {
        **_policy_fields(policy),
        "model": {"description": "ignored: the server serves one model"},
        "stream_options": _nullable({"type": "object", "properties": {"include_usage": {}},
                                     "description": "only with stream: true (else a 400)"}),
        "response_format": _nullable({"anyOf": [_ref("ResponseFormatSimple"), _ref("ResponseFormatJsonSchema")]}),
        **{theirs: sampling[ours] for theirs, ours in SAMPLING_FIELDS.items()},
        **_rule_schemas(rules),
        **_no_file_fields(),
    }


def _completion_request() -> Schema:
    ids = _token_ids(1)
    return {
        "type": "object",
        "required": ["prompt"],
        "additionalProperties": False,
        "properties": {
            **_openai_common(COMPLETION_FIELDS, COMPLETION_RULES),
            "prompt": {"anyOf": [{"type": "string"}, ids,
                                 _list({"anyOf": [{"type": "string"}, ids]}, min_items=1)]},
            "suffix": _nullable({"type": "string", "maxLength": 0, "description": "suffix is not supported"}),
        },
    }


def _chat_message() -> Schema:
    part = {"type": "object", "required": ["type", "text"],
            "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
    name = {"type": "string", "pattern": f"^{chat_messages.NAME.pattern}$",
            "description": "OpenAI's rule: no room for template markup"}
    return {
        "type": "object",
        "required": ["role"],
        "properties": {"role": {"enum": list(chat_messages.ROLES)},
                       "name": _nullable(name),
                       "content": _nullable({"anyOf": [{"type": "string"}, _list(part)]}),
                       "tool_calls": _nullable(_list(_ref("ToolCall"), max_items=chat_messages.MAX_TOOL_CALLS)),
                       "function_call": _nullable(_ref("FunctionCall")),
                       "tool_call_id": _nullable({"type": "string", "maxLength": chat_messages.MAX_CALL_ID})},
    }


def _tool_schemas() -> dict[str, Schema]:
    """tools / functions of a chat request and the calls of its messages (docs/tool-calling.md)."""
    name = {"type": "string", "pattern": f"^{chat_messages.NAME.pattern}$"}
    function = {"type": "object", "required": ["name"],
                "properties": {"name": name, "description": {"type": "string"},
                               "parameters": {"type": "object", "description": "a JSON schema of the arguments object"},
                               "strict": {"type": "boolean"}}}
    call = {"type": "object", "required": ["name"],
            "properties": {"name": name, "arguments": {"type": "string", "description": "a JSON object, as text"}}}
    return {
        "FunctionDefinition": function,
        "Tool": {"type": "object", "required": ["function"],
                 "properties": {"type": {"const": "function"}, "function": _ref("FunctionDefinition")}},
        "FunctionCall": call,
        "ToolCall": {"type": "object", "required": ["function"],
                     "properties": {"id": {"type": "string", "maxLength": chat_messages.MAX_CALL_ID},
                                    "type": {"const": "function"}, "function": _ref("FunctionCall")}},
    }


def _tool_fields() -> dict[str, Schema]:
    named = {"type": "object", "required": ["type", "function"],
             "properties": {"type": {"const": "function"},
                            "function": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}}
    return {
        "tools": _nullable(_list(_ref("Tool"), max_items=MAX_TOOLS)),
        "tool_choice": _nullable({"anyOf": [{"enum": ["none", "auto", "required"]}, named],
                                  "description": "default auto with tools; a named function must be among them"}),
        "parallel_tool_calls": _nullable({"type": "boolean", "description": "default true"}),
        "functions": _nullable(_list(_ref("FunctionDefinition"), max_items=MAX_TOOLS)),
        "function_call": _nullable({"anyOf": [{"enum": ["none", "auto"]},
                                              {"type": "object", "required": ["name"],
                                               "properties": {"name": {"type": "string"}}}]}),
    }


def _chat_request() -> Schema:
    return {
        "type": "object",
        "required": ["messages"],
        "additionalProperties": False,
        "properties": {
            **_openai_common(CHAT_FIELDS, CHAT_RULES),
            **_tool_fields(),
            "messages": _list(_ref("ChatMessage"), min_items=1),
        },
    }


def _response_formats() -> dict[str, Schema]:
    simple = {"type": "object", "required": ["type"],
              "properties": {"type": {"enum": ["text", "json_object"]}}}
    with_schema = {
        "type": "object", "required": ["type", "json_schema"],
        "properties": {"type": {"const": "json_schema"},
                       "json_schema": {"type": "object", "required": ["schema"],
                                       "properties": {"name": {"type": "string"}, "schema": {"type": "object"},
                                                      "strict": {"type": ["boolean", "null"]}}}},
    }
    return {"ResponseFormatSimple": simple, "ResponseFormatJsonSchema": with_schema}


def _small_requests() -> dict[str, Schema]:
    strings = {"anyOf": [{"type": "string"}, _list({"type": "string"})]}
    return {
        "EncodeRequest": {"type": "object", "required": ["text"],
                          "properties": {"text": strings, **_no_file_fields()}},
        "AbortRequest": {
            "type": "object",
            "properties": {"rid": _nullable({"type": "string"}), "abort_all": _nullable({"type": "boolean"}),
                           **_no_file_fields()},
            "anyOf": [{"required": ["rid"], "properties": {"rid": {"type": "string"}}},
                      {"required": ["abort_all"], "properties": {"abort_all": {"const": True}}}],
        },
        # The frontend sends {"src_rids": [str], "dst_rid": str}; any JSON is accepted and ignored (B.2).
        "ConcateAndAppendRequest": {"description": "any JSON (accepted and ignored)",
                                    "properties": _no_file_fields()},
    }


# ---- response schemas ---------------------------------------------------------------------

def _generate_result() -> Schema:
    meta = {
        "type": "object",
        "required": ["id", "finish_reason", "prompt_tokens", "completion_tokens", "cached_tokens"],
        "properties": {"id": {"type": "string"}, "finish_reason": {"type": ["object", "null"]},
                       "prompt_tokens": _int(0), "completion_tokens": _int(0), "cached_tokens": _int(0)},
    }
    return {"type": "object", "required": ["text", "output_ids", "meta_info"],
            "properties": {"text": {"type": "string"}, "output_ids": _list(_int(0)), "meta_info": meta}}


def _openai_result(kind: str) -> Schema:
    choice_key = "message" if kind == "chat.completion" else "text"
    choice = {"type": "object", "required": ["index", choice_key, "finish_reason"],
              "properties": {"index": _int(0), "finish_reason": {"type": ["string", "null"]}}}
    usage = {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
             "properties": {k: _int(0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}}
    return {"type": "object", "required": ["id", "object", "created", "model", "choices", "usage"],
            "properties": {"id": {"type": "string"}, "object": {"const": kind}, "created": _int(0),
                           "model": {"type": "string"}, "choices": _list(choice), "usage": usage}}


def _model_card() -> Schema:
    return {"type": "object", "required": ["id", "object", "created", "owned_by"],
            "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "created": _int(0),
                           "owned_by": {"type": "string"}, "max_model_len": {"type": ["integer", "null"]},
                           "tool_call_parser": {"enum": list(TOOL_CALL_PARSERS)},
                           "tool_call_prompt": {"enum": ["chat template", "system message"]}}}


def _schemas() -> dict[str, Schema]:
    return {
        "Error": _error_schema(),
        "SamplingParams": _sampling_params(),
        "GenerateRequest": _generate_request(),
        "GenerateResult": _generate_result(),
        "CompletionRequest": _completion_request(),
        "ChatCompletionRequest": _chat_request(),
        "ChatMessage": _chat_message(),
        **_tool_schemas(),
        **_response_formats(),
        **_small_requests(),
        "Completion": _openai_result("text_completion"),
        "ChatCompletion": _openai_result("chat.completion"),
        "ModelCard": _model_card(),
        "ModelInfo": {"type": "object", "required": ["model_path"],
                      "properties": {"model_path": {"type": "string"}, "context_length": {"type": ["integer", "null"]}}},
        "ServerInfo": {"type": "object", "required": ["version"], "properties": {"version": {"type": "string"}}},
        **_web_view_schemas(),
    }


# ---- the web view (http/web_view.py) -------------------------------------------------------

def _object(required: dict[str, Schema], **optional: Schema) -> Schema:
    return {"type": "object", "required": sorted(required), "properties": {**required, **optional}}


def _web_view_schemas() -> dict[str, Schema]:
    count, number = _int(0), {"type": "number"}
    node = _object({
        "id": count, "parent": {"type": ["integer", "null"]}, "depth": count, "tokens": count,
        "text": {"type": "string", "description": "the decoded start of the node's key segment"},
        "text_is_prefix": {"type": "boolean"}, "lock_ref": count, "hits": count, "last_access_s": number,
        "last_hit_s": {"type": ["number", "null"]}, "subtree_nodes": _int(1), "subtree_tokens": count,
        "children": count, "hidden_nodes": count, "hidden_tokens": count,
    })
    tree = _object({
        "radix_cache": {"type": "boolean"}, "start_id": count, "path": _list(count), "total_nodes": count,
        "total_tokens": count, "evictable_tokens": count, "protected_tokens": count,
        "truncated": {"type": "boolean"}, "took_s": number, "nodes": _list(_ref("CacheTreeNode"), min_items=1),
    })
    row = _object({
        "rid": {"type": "string"}, "state": {"enum": ["grammar", "queued", "retracted", "running"]},
        "prompt_tokens": count, "cached_tokens": count, "computed_tokens": count,
        "constraint": {"type": ["string", "null"]}, "generated_tokens": count, "jump_forward_tokens": count,
        "retractions": count, "age_s": number,
    })
    stats = _object({
        "time_s": number, "running": count, "waiting": count, "grammar_pending": count, "kv_pool_size": count,
        "kv_free": count, "kv_evictable": count, "kv_protected": count, "kv_held": count,
        "counters": {"type": "object", "additionalProperties": count,
                     "description": "cumulative: take differences between two polls for rates"},
        "cache_hit_rate": number, "radix_cache": {"type": "boolean"}, "tree_nodes": count, "took_s": number,
        "requests": _list(_ref("RequestRow")),
    })
    rules = _rule_schemas(TOKEN_PIECES_RULES)
    pieces_request = {
        "type": "object", "additionalProperties": False,
        "oneOf": [{"required": ["text"]}, {"required": ["input_ids"]}, {"required": ["messages"]}],
        "properties": {**rules, "messages": _list(_ref("ChatMessage"), min_items=1)},
        "description": "one of text, input_ids, messages (chat messages, rendered with the chat template)",
    }
    pieces = _object({"input_ids": _list(count), "pieces": _list({"type": "string"}), "text": {"type": "string"}})
    return {"CacheTreeNode": node, "CacheTree": tree, "RequestRow": row, "LiveStats": stats,
            "TokenPiecesRequest": pieces_request, "TokenPieces": pieces}


def _content_ok(media_type: str, description: str) -> Schema:
    return {"description": description, "content": {media_type.split(";")[0]: {"schema": {"type": "string"}}}}


def _web_view_paths() -> dict[str, Schema]:
    params = [{"name": name, "in": "query", "required": False, "schema": rule.schema(),
               "description": rule.description} for name, rule in TREE_PARAMS.items()]
    tree = _get("A bounded snapshot of the radix tree (404: the start node was evicted)",
                _json_ok(_ref("CacheTree")), "BadRequest", "NotFound")
    tree["get"]["parameters"] = params
    paths = {
        "/": _get("The live view of the runtime (an HTML page; served without the API key)",
                  _content_ok(MEDIA_TYPES[".html"], "The page")),
        "/cache/tree": tree,
        "/stats": _get("Counters, KV pool use and one row per request in the scheduler", _json_ok(_ref("LiveStats"))),
        "/token_pieces": _post("A prompt's token ids and the text each one adds", "TokenPiecesRequest",
                               _json_ok(_ref("TokenPieces"))),
    }
    for name in STATIC_FILES:
        media = MEDIA_TYPES["." + name.rsplit(".", 1)[1]]
        paths[f"/static/{name}"] = _get("A file of the live view's page (served without the API key)",
                                        _content_ok(media, "The file"))
    return paths


# ---- paths --------------------------------------------------------------------------------

def _generation_ok(result: Schema) -> Schema:
    return {"description": "The result (JSON), or server-sent events with \"stream\": true",
            "content": {"application/json": {"schema": result},
                        "text/event-stream": {"schema": {"type": "string"}}}}


def _no_content(description: str) -> Schema:
    return {"description": description}


def _text_ok(description: str) -> Schema:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def _post(summary: str, request: str, ok: Schema) -> Schema:
    return {"post": _op(summary, ok, BODY_ERRORS, _json_body(_ref(request)))}


def _get(summary: str, ok: Schema, *errors: str) -> Schema:
    return {"get": _op(summary, ok, ("Unavailable", *errors))}


def _native_paths() -> dict[str, Schema]:
    generate_ok = _generation_ok({"anyOf": [_ref("GenerateResult"), _list(_ref("GenerateResult"))]})
    model_info = _get("Model information (the SGLang frontend reads model_path)", _json_ok(_ref("ModelInfo")))
    server_info = _get("Server arguments and state", _json_ok(_ref("ServerInfo")))
    flush = _op("Reset the prefix cache (400 while requests run)", _text_ok("Cache flushed"),
                ("BadRequest", "Unavailable"))
    return {
        "/generate": _post("Generate (SGLang native, wire-protocol B.7)", "GenerateRequest", generate_ok),
        "/encode": _post("Tokenize text", "EncodeRequest", _json_ok({"type": "object", "required": ["input_ids"]})),
        "/abort_request": _abort_request(),
        "/concate_and_append_request": _post("Frontend join hint (a no-op)", "ConcateAndAppendRequest",
                                             _json_ok({"type": "object", "properties": {"success": {"const": True}}})),
        "/flush_cache": {"get": flush, "post": dict(flush)},
        "/model_info": model_info,
        "/get_model_info": model_info,
        "/server_info": server_info,
        "/get_server_info": server_info,
        "/health": _get("Liveness", _no_content("Serving")),
        "/ready": _get("Readiness", _no_content("Ready")),
        "/health_generate": _get("Generates one token", _no_content("A token was generated")),
        "/metrics": _get("Prometheus metrics", _text_ok("Metrics in the Prometheus text format")),
        "/openapi.json": _get("This document", _json_ok({"type": "object", "required": ["openapi", "paths"]})),
    }


def _abort_request() -> Schema:
    rids = _list({"type": "string"})
    ok = _json_ok({"type": "object", "required": ["aborted", "not_found"],
                   "properties": {"aborted": rids, "not_found": rids}},
                  "The rids aborted and those not in flight (abort_all: every rid in flight)")
    path = _post("Abort a request by rid, or all; 404 for one rid that is not in flight", "AbortRequest", ok)
    path["post"]["responses"]["404"] = _ref_response("NotFound")
    return path


def _openai_paths() -> dict[str, Schema]:
    model_param = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
    model = _get("One model card (404 unless it is the served model)", _json_ok(_ref("ModelCard")), "NotFound")
    model["get"]["parameters"] = [model_param]
    models = {"type": "object", "required": ["object", "data"],
              "properties": {"object": {"const": "list"}, "data": _list(_ref("ModelCard"))}}
    return {
        "/v1/completions": _post("OpenAI completions", "CompletionRequest", _generation_ok(_ref("Completion"))),
        "/v1/chat/completions": _post("OpenAI chat completions", "ChatCompletionRequest",
                                      _generation_ok(_ref("ChatCompletion"))),
        "/v1/models": _get("The served model", _json_ok(models)),
        "/v1/models/{model}": model,
    }


def _paths() -> dict[str, Schema]:
    return {**_native_paths(), **_openai_paths(), **_web_view_paths()}
