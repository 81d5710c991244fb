"""Which top-level fields each generation endpoint accepts: an unknown field is a 400.

A typo (`max_token`, `temprature`) silently ignored gives the user a wrong answer with no
hint why, so every top-level key must be one of:

  * handled: read and validated by the endpoint's parser;
  * inert: sent by well-known clients and meaningless for a single-model server (OpenAI's
    `user`, `metadata`, `store`...): accepted with any value and ignored;
  * unsupported: a field of the SGLang or OpenAI protocol that radixlm does not implement:
    accepted only when empty (null, false, "", [], {}) or at its protocol default, because
    clients such as SGLang's frontend send `"session_id": null`; a real value is a 400
    saying it is not supported, rather than being dropped.

    check_fields(body, GENERATE_FIELDS)   # ValueError (-> HTTP 400) naming the field
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from radixlm.runtime.http.common import FILE_FIELDS


@dataclass(frozen=True)
class FieldPolicy:
    endpoint: str
    handled: frozenset[str]
    inert: frozenset[str] = frozenset()
    unsupported: frozenset[str] = frozenset()
    defaults: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # unsupported, but this value is fine

    def accepted(self) -> list[str]:
        return sorted(self.handled | self.inert)


def check_fields(body: dict, policy: FieldPolicy) -> None:
    for key, value in body.items():
        if key in policy.handled or key in policy.inert:
            continue
        if key in policy.unsupported:
            if _is_empty(value) or value in policy.defaults.get(key, ()):
                continue
            raise ValueError(f"{key} is not supported by {policy.endpoint} on this server; "
                             "leave it out or send null")
        raise ValueError(f"unknown field {key!r} in the {policy.endpoint} request; "
                         f"accepted fields: {', '.join(policy.accepted())}")


def _is_empty(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, (str, list, dict)) and not value)


GENERATE_FIELDS = FieldPolicy(
    endpoint="/generate",
    handled=frozenset({
        "text", "input_ids", "sampling_params", "rid", "stream", "return_logprob",
        "logprob_start_len", "top_logprobs_num", "return_text_in_logprobs",
    }),
    inert=frozenset({"log_metrics", "no_logs", "received_time", "custom_labels", "external_trace_header"}),
    # The rest of SGLang's GenerateReqInput (0.5.x).
    unsupported=FILE_FIELDS | frozenset({
        "session_id", "input_embeds", "mm_hashes", "mm_content_hashes", "use_audio_in_video",
        "video_config", "watermark", "token_ids_logprob", "return_sampling_mask",
        "sampling_logprobs_mode", "return_flat_raw_top_logprobs",
        "return_flat_raw_output_top_logprobs", "return_flat_raw_top_logprobs_b64",
        "return_hidden_states", "return_routed_experts", "routed_experts_start_len",
        "return_indexer_topk", "modalities", "session_params", "lora_id",
        "positional_embed_overrides", "bootstrap_host", "bootstrap_port", "bootstrap_room",
        "bootstrap_pair_key", "decode_tp_size", "routed_dp_rank", "data_parallel_rank",
        "disagg_prefill_dp_rank", "routing_key", "conversation_id", "background",
        "require_reasoning", "max_thinking_tokens", "priority", "extra_key", "return_bytes",
        "return_entropy", "return_prompt_token_ids", "encoder_urls", "max_dynamic_patch",
        "min_dynamic_patch", "image_max_dynamic_patch", "video_max_dynamic_patch",
        "images_config", "mm_processor_kwargs", "multi_item_delimiter_indices",
        "token_indices_to_pool", "cache_salt", "kv_hints",
        "model",  # sglang-router 0.3.2 adds `"model": null` to every /generate it forwards
    }),
)

# OpenAI fields that do not change a completion from a single-model server.
_OPENAI_INERT = frozenset({"model", "user", "metadata", "store", "service_tier", "safety_identifier",
                           "prompt_cache_key"})
# SGLang / vLLM extensions of the OpenAI routes that radixlm does not implement.
_OPENAI_EXTENSIONS = FILE_FIELDS | frozenset({
    "rid", "return_hidden_states", "chat_template_kwargs", "separate_reasoning",
    "stream_reasoning", "continue_final_message", "add_generation_prompt", "include_stop_str_in_output",
    "priority", "bootstrap_host", "bootstrap_port", "bootstrap_room", "session_params",
})
# SGLang's defaults for two of them: without a reasoning parser they change nothing, and
# sglang-router 0.3.2 sends them on every chat request it forwards.
_OPENAI_EXTENSION_DEFAULTS = {"separate_reasoning": (True,), "stream_reasoning": (True,)}


def openai_policy(endpoint: str, handled: set[str], unsupported: set[str],
                  defaults: dict[str, tuple[Any, ...]] | None = None) -> FieldPolicy:
    return FieldPolicy(endpoint=endpoint, handled=frozenset(handled), inert=_OPENAI_INERT,
                       unsupported=_OPENAI_EXTENSIONS | frozenset(unsupported),
                       defaults={**_OPENAI_EXTENSION_DEFAULTS, **(defaults or {})})
