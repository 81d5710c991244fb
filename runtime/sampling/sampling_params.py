"""SamplingParams: every per-request generation knob, validated in one place (DESIGN §6).

Field names and defaults follow SGLang's `sampling_params` wire object
(shared/reference/wire-protocol.md B.7), so a JSON body maps onto this dataclass 1:1.
`from_dict` rejects unknown keys; `validate` raises ValueError naming the field and the
allowed range. `null` for a field means "use the default".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

TOP_K_ALL = 1 << 30
GREEDY_TEMPERATURE = 1e-6
MAX_STOP_STRINGS = 32
MIN_REPETITION_PENALTY = 1e-6


@dataclass
class SamplingParams:
    max_new_tokens: int = 128
    min_new_tokens: int = 0
    n: int = 1
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    stop_regex: list[str] = field(default_factory=list)
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = TOP_K_ALL
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    regex: str | None = None
    json_schema: str | None = None
    ebnf: str | None = None
    structural_tag: str | None = None
    choices: list[str] | None = None
    logit_bias: dict[str, float] = field(default_factory=dict)
    sampling_seed: int | None = None
    stream_interval: int | None = None
    custom_params: dict | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SamplingParams:
        """Build from a JSON-like dict: unknown keys are a ValueError, nulls mean default."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown sampling parameter {unknown[0]!r}; expected one of: {', '.join(sorted(known))}"
            )
        params = cls(**{k: v for k, v in d.items() if v is not None})
        params.normalize()
        params.validate()
        return params

    def normalize(self) -> None:
        """Accept the wire protocol's loose forms: a bare stop string, top_k -1, empty regex."""
        self.stop = _as_list("stop", self.stop, bare_string=True)
        self.stop_token_ids = _as_list("stop_token_ids", self.stop_token_ids, bare_string=False)
        self.stop_regex = _as_list("stop_regex", self.stop_regex, bare_string=True)
        for name in ("max_new_tokens", "min_new_tokens", "n", "top_k", "sampling_seed", "stream_interval"):
            v = getattr(self, name)
            if isinstance(v, float) and v.is_integer():
                setattr(self, name, int(v))
        if self.top_k == -1 or self.top_k == 0:
            self.top_k = TOP_K_ALL
        for name in ("regex", "json_schema", "ebnf", "structural_tag"):
            if getattr(self, name) == "":
                setattr(self, name, None)
        if isinstance(self.json_schema, dict):
            import json

            self.json_schema = json.dumps(self.json_schema)

    def validate(self) -> None:
        _check_int("max_new_tokens", self.max_new_tokens, lo=0)
        _check_int("min_new_tokens", self.min_new_tokens, lo=0)
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens ({self.min_new_tokens}) must be <= max_new_tokens ({self.max_new_tokens})"
            )
        _check_int("n", self.n, lo=1, hi=128)
        _check_float("temperature", self.temperature, lo=0.0)
        _check_float("top_p", self.top_p, lo=0.0, lo_open=True, hi=1.0)
        _check_int("top_k", self.top_k, lo=1)
        _check_float("min_p", self.min_p, lo=0.0, hi=1.0)
        _check_float("frequency_penalty", self.frequency_penalty, lo=-2.0, hi=2.0)
        _check_float("presence_penalty", self.presence_penalty, lo=-2.0, hi=2.0)
        # Not just > 0: logits divided by a penalty under ~1e-30 overflow float32 to inf (NaN probs).
        _check_float("repetition_penalty", self.repetition_penalty, lo=MIN_REPETITION_PENALTY, hi=2.0)
        self._validate_stops()
        for name in ("ignore_eos", "skip_special_tokens", "spaces_between_special_tokens", "no_stop_trim"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a boolean (got {getattr(self, name)!r})")
        if self.sampling_seed is not None:
            _check_int("sampling_seed", self.sampling_seed, lo=-(1 << 63), hi=(1 << 63) - 1)
        self._validate_logit_bias()
        if self.stream_interval is not None:
            _check_int("stream_interval", self.stream_interval, lo=1)
        if self.custom_params is not None and not isinstance(self.custom_params, dict):
            raise ValueError(f"custom_params must be an object (got {self.custom_params!r})")
        constraints = [n for n in ("regex", "json_schema", "ebnf", "structural_tag", "choices")
                       if getattr(self, n) is not None]
        if len(constraints) > 1:
            raise ValueError(
                f"only one of regex, json_schema, ebnf, structural_tag, choices may be set (got {', '.join(constraints)})"
            )

    def _validate_stops(self) -> None:
        if len(self.stop) > MAX_STOP_STRINGS or len(self.stop_regex) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings are allowed (got {len(self.stop)})")
        for s in self.stop:
            if not isinstance(s, str) or not s:
                raise ValueError(f"stop must be non-empty strings (got {s!r})")
        for t in self.stop_token_ids:
            if not isinstance(t, int) or isinstance(t, bool) or t < 0:
                raise ValueError(f"stop_token_ids must be non-negative integers (got {t!r})")
        for r in self.stop_regex:
            if not isinstance(r, str) or len(r.encode()) > 256:
                raise ValueError(f"stop_regex entries must be strings of at most 256 bytes (got {r!r})")
            import re

            try:
                re.compile(r)
            except re.error as e:
                raise ValueError(f"invalid stop_regex {r!r}: {e}") from None

    def _validate_logit_bias(self) -> None:
        if not isinstance(self.logit_bias, dict):
            raise ValueError("logit_bias must be an object mapping token ids to biases")
        for k, v in self.logit_bias.items():
            try:
                int(k)
            except (TypeError, ValueError):
                raise ValueError(f"logit_bias keys must be token ids (got {k!r})") from None
            _check_float(f"logit_bias[{k}]", v, lo=-100.0, hi=100.0)

    def check_vocab(self, vocab_size: int) -> None:
        """Token ids named in the params must exist in the model's vocabulary."""
        for t in self.stop_token_ids:
            if t >= vocab_size:
                raise ValueError(f"stop_token_ids entry {t} is outside the vocabulary (size {vocab_size})")
        for k in self.logit_bias:
            if not 0 <= int(k) < vocab_size:
                raise ValueError(f"logit_bias token id {k} is outside the vocabulary (size {vocab_size})")

    @property
    def is_greedy(self) -> bool:
        return self.temperature < GREEDY_TEMPERATURE or self.top_k == 1

    @property
    def has_penalties(self) -> bool:
        return (
            self.frequency_penalty != 0.0
            or self.presence_penalty != 0.0
            or self.repetition_penalty != 1.0
        )

    @property
    def constraint(self) -> tuple[str, Any] | None:
        """(kind, spec) of the grammar constraint, if any."""
        for kind in ("regex", "json_schema", "ebnf", "structural_tag", "choices"):
            spec = getattr(self, kind)
            if spec is not None:
                return kind, spec
        return None


def _as_list(name: str, v: Any, bare_string: bool) -> list:
    """A list field; null means empty and (for stop strings) a bare string means one entry."""
    if v is None:
        return []
    if bare_string and isinstance(v, str):
        return [v]
    if not isinstance(v, (list, tuple)):  # tuples: Engine callers in Python
        kind = "a string or a list of strings" if bare_string else "a list of token ids"
        raise ValueError(f"{name} must be {kind} (got {v!r})")
    return list(v)


def _check_int(name: str, v: Any, lo: int | None = None, hi: int | None = None) -> None:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError(f"{name} must be an integer (got {v!r})")
    if lo is not None and v < lo:
        raise ValueError(f"{name} must be >= {lo} (got {v})")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be <= {hi} (got {v})")


def _check_float(
    name: str, v: Any, lo: float | None = None, hi: float | None = None, lo_open: bool = False
) -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise ValueError(f"{name} must be a number (got {v!r})")
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite (got {v})")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo} (got {v})")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be <= {hi} (got {v})")
