"""The OpenAPI 3.1 description of the server's HTTP API, served at `GET /openapi.json`.

    spec = build_openapi(version="0.1.0", api_key=True, max_body_size=16 << 20)

It describes what the validators accept, not what we wish they did: the request schemas
follow `generate_input.py`, `openai_api.py` and `SamplingParams.validate` field by field
(types, ranges, list-or-scalar forms, `null` meaning "the default"), and a change there must
change this file too; tests/server/test_openapi_fuzz.py fuzzes the server against it. Checks
that need the model or the request as a whole are in the descriptions instead (the prompt
plus max_new_tokens must fit the context, token ids must be in the vocabulary, at most one
constraint). Unknown top-level keys are ignored, as SGLang does; unknown `sampling_params`
keys are a 400.
"""

from __future__ import annotations

import copy
from typing import Any

from radixlm.runtime.http.common import FILE_FIELDS, OPEN_PATHS
from radixlm.runtime.http.openai_api import CHAT_FIELDS, COMPLETION_FIELDS
from radixlm.runtime.http.request_fields import GENERATE_FIELDS, FieldPolicy

Schema = dict[str, Any]
INT64 = {"minimum": -(1 << 63), "maximum": (1 << 63) - 1}


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
                if path in OPEN_PATHS:
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


def _num(lo: float | None = None, hi: float | None = None, lo_open: bool = False, **extra: Any) -> Schema:
    s: Schema = {"type": "number", **extra}
    if lo is not None:
        s["exclusiveMinimum" if lo_open else "minimum"] = lo
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


def _one_or_list(schema: Schema, what: str) -> Schema:
    """A value shared by the batch, or a list with one entry per prompt (generate_input._per_item)."""
    return _nullable({"anyOf": [schema, _list(schema)], "description": f"{what}; or a list, one per prompt"})


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
    "NotFound": "No such route or model",
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

def _stop_strings(max_len: int | None = None) -> Schema:
    one: Schema = {"type": "string", "minLength": 1} if max_len is None else {"type": "string", "maxLength": max_len}
    return _nullable({"anyOf": [one, _list(one, max_items=32)]})


def _token_ids(min_items: int = 0) -> Schema:
    return _list(_int(0, description="a token id (< the vocabulary size)"), min_items=min_items)


def _logit_bias() -> Schema:
    return _nullable({"type": "object", "propertyNames": {"pattern": "^[0-9]+$"},
                      "additionalProperties": _num(-100, 100),
                      "description": "token id (as a string, in the vocabulary) -> bias"})


def _json_schema_param() -> Schema:
    return _nullable({"type": ["string", "object"],
                      "description": "a JSON schema (as a string, or an object); \"\" means none"})


def _sampling_fields() -> dict[str, Schema]:
    """SamplingParams fields shared by /generate and the OpenAI routes (same checks)."""
    return {
        "temperature": _nullable(_num(0, description="below 1e-6 means greedy")),
        "top_p": _nullable(_num(0, 1, lo_open=True)),
        "top_k": _nullable(_int(-1, description="-1 or 0: all tokens")),
        "min_p": _nullable(_num(0, 1)),
        "frequency_penalty": _nullable(_num(-2, 2)),
        "presence_penalty": _nullable(_num(-2, 2)),
        "repetition_penalty": _nullable(_num(1e-6, 2)),
        "stop": _stop_strings(),
        "stop_token_ids": _nullable(_token_ids()),
        "stop_regex": _stop_strings(max_len=256),
        "ignore_eos": _nullable({"type": "boolean"}),
        "skip_special_tokens": _nullable({"type": "boolean"}),
        "no_stop_trim": _nullable({"type": "boolean"}),
        "logit_bias": _logit_bias(),
        "regex": _nullable({"type": "string", "description": "\"\" means none"}),
        "json_schema": _json_schema_param(),
        "ebnf": _nullable({"type": "string", "maxLength": 0, "description": "not supported: only \"\" or null"}),
    }


def _sampling_params() -> Schema:
    fields = _sampling_fields()
    fields.update({
        "max_new_tokens": _nullable(_int(0, description="default 128; 0 = prefill only")),
        "min_new_tokens": _nullable(_int(0, description="at most max_new_tokens")),
        "n": _nullable(_int(1, 128)),
        "spaces_between_special_tokens": _nullable({"type": "boolean"}),
        "structural_tag": _nullable({"type": "string", "maxLength": 0,
                                     "description": "not supported: only \"\" or null"}),
        "choices": _nullable(_list({"type": "string", "minLength": 1}, min_items=1)),
        "sampling_seed": _nullable(_int(**INT64)),
        "stream_interval": _nullable(_int(1)),
        "custom_params": _nullable({"type": "object"}),
    })
    return {"type": "object", "properties": fields, "additionalProperties": False,
            "description": "At most one of regex, json_schema, choices. The prompt plus max_new_tokens "
                           "must fit the context length and the KV pool."}


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
            "rid": _nullable({"anyOf": [{"type": "string"}, _list({"type": "string"})],
                              "description": "request id(s); a string is a prefix for a batch"}),
            "stream": _nullable({"type": "boolean"}),
            "sampling_params": _one_or_list(_ref("SamplingParams"), "sampling parameters"),
            "return_logprob": _one_or_list({"type": "boolean"}, "return logprobs"),
            "logprob_start_len": _one_or_list(_int(), "first prompt position with logprobs (-1: none)"),
            "top_logprobs_num": _one_or_list(_int(0, 20), "top logprobs per position"),
            "return_text_in_logprobs": _nullable({"type": "boolean"}),
        },
    }


def _openai_common(policy: FieldPolicy) -> dict[str, Schema]:
    """Fields both OpenAI routes read (openai_api.py); an unknown key is a 400."""
    return {
        **_policy_fields(policy),
        "model": {"description": "ignored: the server serves one model"},
        "n": _nullable(_int(1, 128)),
        "stream": _nullable({"type": "boolean"}),
        "stream_options": _nullable({"type": "object", "properties": {"include_usage": {}}}),
        "seed": _nullable(_int(**INT64)),
        "min_tokens": _nullable(_int(0)),
        "response_format": _nullable({"anyOf": [_ref("ResponseFormatSimple"), _ref("ResponseFormatJsonSchema")]}),
        "tools": {"description": "refused when non-empty (unless tool_choice is \"none\")"},
        "tool_choice": {},
        **_sampling_fields(),
        **_no_file_fields(),
    }


def _completion_request() -> Schema:
    ids = _token_ids(1)
    return {
        "type": "object",
        "required": ["prompt"],
        "additionalProperties": False,
        "properties": {
            **_openai_common(COMPLETION_FIELDS),
            "prompt": {"anyOf": [{"type": "string"}, ids,
                                 _list({"anyOf": [{"type": "string"}, ids]}, min_items=1)]},
            "max_tokens": _nullable(_int(0, description="default 16; 0 only with echo (scores the prompt)")),
            "logprobs": _nullable(_int(0, 20)),
            "echo": _nullable({"type": "boolean", "description": "prepend the prompt (and its logprobs)"}),
            "suffix": _nullable({"type": "string", "maxLength": 0, "description": "suffix is not supported"}),
        },
    }


def _chat_message() -> Schema:
    part = {"type": "object", "required": ["type", "text"],
            "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
    return {
        "type": "object",
        "required": ["role"],
        "properties": {"role": {"type": "string"},
                       "content": _nullable({"anyOf": [{"type": "string"}, _list(part)]})},
    }


def _chat_request() -> Schema:
    return {
        "type": "object",
        "required": ["messages"],
        "additionalProperties": False,
        "properties": {
            **_openai_common(CHAT_FIELDS),
            "messages": _list(_ref("ChatMessage"), min_items=1),
            "max_tokens": _nullable(_int(0, description="default: as much as fits the context")),
            "max_completion_tokens": _nullable(_int(0, description="overrides max_tokens")),
            "logprobs": _nullable({"type": "boolean"}),
            "top_logprobs": _nullable(_int(0, 20)),
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
                           "owned_by": {"type": "string"}, "max_model_len": {"type": ["integer", "null"]}}}


def _schemas() -> dict[str, Schema]:
    return {
        "Error": _error_schema(),
        "SamplingParams": _sampling_params(),
        "GenerateRequest": _generate_request(),
        "GenerateResult": _generate_result(),
        "CompletionRequest": _completion_request(),
        "ChatCompletionRequest": _chat_request(),
        "ChatMessage": _chat_message(),
        **_response_formats(),
        **_small_requests(),
        "Completion": _openai_result("text_completion"),
        "ChatCompletion": _openai_result("chat.completion"),
        "ModelCard": _model_card(),
        "ModelInfo": {"type": "object", "required": ["model_path"],
                      "properties": {"model_path": {"type": "string"}, "context_length": {"type": ["integer", "null"]}}},
        "ServerInfo": {"type": "object", "required": ["version"], "properties": {"version": {"type": "string"}}},
    }


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
        "/abort_request": _post("Abort a request by rid, or all", "AbortRequest",
                                _json_ok({"type": "object", "required": ["aborted"],
                                          "properties": {"aborted": _list({"type": "string"})}})),
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
    return {**_native_paths(), **_openai_paths()}
