"""SamplingParams: every per-request generation knob, validated in one place.

See docs/architecture.md §6.

Field names and defaults follow SGLang's `sampling_params` wire object
(docs/wire-protocol.md B.7), so a JSON body maps onto this dataclass 1:1.
`from_dict` rejects unknown keys; `validate` raises ValueError naming the field and the
allowed range. `null` for a field means "use the default". Each field's own check is a rule
in FIELD_RULES (runtime/validation.py), which /openapi.json also describes the fields from;
the checks across fields are code in `validate`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from radixlm.runtime.sampling.stop_regex import compile_stop_regex
from radixlm.runtime.validation import Bool, Int, ListOf, Number, Object, Rule, Str

TOP_K_ALL = 1 << 30
GREEDY_TEMPERATURE = 1e-6
MAX_STOP_STRINGS = 32
MAX_STOP_REGEX_BYTES = 256
MIN_REPETITION_PENALTY = 1e-6
CONSTRAINT_KINDS = ("regex", "json_schema", "ebnf", "structural_tag", "choices")


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
    # Constrained outputs (docs/structured-output.md): None = the default for the constraint.
    complete_within_budget: bool | None = None  # always a full match within max_new_tokens
    end_on_reject: bool | None = None  # end where the model prefers what the grammar forbids

    @classmethod
    def from_dict(
        cls, d: dict[str, Any] | None, names: Mapping[str, str] | None = None
    ) -> SamplingParams:
        """Build from a JSON-like dict: unknown keys are a ValueError, nulls mean default.
        `names` maps a field to the name the client sent it under (the OpenAI routes' `seed`
        is our `sampling_seed`), so that an error names what the client wrote."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown sampling parameter {unknown[0]!r}; expected one of: {', '.join(sorted(known))}"
            )
        params = cls(**{k: v for k, v in d.items() if v is not None})
        params.validate(names)
        return params

    def validate(self, names: Mapping[str, str] | None = None) -> None:
        """Check every field, ValueError naming the first bad one (as `names` calls it), and put
        the wire protocol's loose forms into canonical ones: None -> the default, a bare
        stop string -> [it], top_k -1 or 0 -> all tokens, an empty constraint -> none, a
        json_schema object -> text."""
        names = names or {}
        # Before the rules: -1 and 0 mean all tokens (the integers only: 0.0 and false are
        # refused by the rule like any other non-integer).
        if type(self.top_k) is int and self.top_k in (-1, 0):
            self.top_k = TOP_K_ALL
        for name, rule in FIELD_RULES.items():
            value = rule.check(names.get(name, name), getattr(self, name), _default(name))
            setattr(self, name, value)
        self._canonicalize()
        self._check_across_fields(names)

    def _check_across_fields(self, names: Mapping[str, str]) -> None:
        """The checks that are code rather than rules: across fields, or beyond what a JSON
        schema can state (a stop_regex compiles, a logit_bias key parses as a token id)."""

        def shown(name: str) -> str:
            return names.get(name, name)

        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"{shown('min_new_tokens')} ({self.min_new_tokens}) must be <= "
                             f"{shown('max_new_tokens')} ({self.max_new_tokens})")
        for r in self.stop_regex:
            try:
                compile_stop_regex(r)
            except ValueError as e:
                raise ValueError(f"invalid {shown('stop_regex')} {r!r}: {e}") from None
        for k in self.logit_bias:
            try:
                int(k)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{shown('logit_bias')} keys must be token ids (got {k!r})"
                ) from None
        constraints = [shown(n) for n in CONSTRAINT_KINDS if getattr(self, n) is not None]
        if len(constraints) > 1:
            kinds = ", ".join(dict.fromkeys(shown(n) for n in CONSTRAINT_KINDS))
            raise ValueError(f"only one of {kinds} may be set (got {', '.join(constraints)})")

    def _canonicalize(self) -> None:
        for name in ("regex", "json_schema", "ebnf", "structural_tag"):
            if getattr(self, name) == "":
                setattr(self, name, None)
        for name in ("json_schema", "structural_tag"):  # an object is sent as its JSON text
            if isinstance(getattr(self, name), dict):
                setattr(self, name, json.dumps(getattr(self, name)))

    def check_vocab(self, vocab_size: int) -> None:
        """Token ids named in the params must exist in the model's vocabulary."""
        for t in self.stop_token_ids:
            if t >= vocab_size:
                raise ValueError(f"stop_token_ids entry {t} is outside the vocabulary (size {vocab_size})")
        for k in self.logit_bias:
            if not 0 <= int(k) < vocab_size:
                raise ValueError(f"logit_bias token id {k} is outside the vocabulary (size {vocab_size})")

    def for_choice(self, index: int) -> SamplingParams:
        """The params of sample `index` of an `n`-sample request (both /generate and the OpenAI
        routes expand n here): n = 1 and, with a seed, the seed `choice_seed(seed, index)`, so
        the n samples differ yet each is reproducible (as OpenAI and vLLM do). Sample 0 keeps
        the seed itself: an n = 1 request is unchanged."""
        seed = None if self.sampling_seed is None else choice_seed(self.sampling_seed, index)
        return dataclasses.replace(self, n=1, sampling_seed=seed)

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
        for kind in CONSTRAINT_KINDS:
            spec = getattr(self, kind)
            if spec is not None:
                return kind, spec
        return None



# One rule per field; the constraint fields (CONSTRAINT_KINDS) are checked by runtime/constrained
# when they are compiled. http/openapi_spec.py describes the fields from these rules.
FIELD_RULES: dict[str, Rule] = {
    "max_new_tokens": Int(lo=0, description="default 128; 0 = prefill only"),
    "min_new_tokens": Int(lo=0, description="at most max_new_tokens"),
    "n": Int(lo=1, hi=128),
    "stop": ListOf(item=Str(min_len=1), max_items=MAX_STOP_STRINGS, bare=True),
    "stop_token_ids": ListOf(item=Int(lo=0,
                                      description="a token id (< the vocabulary size)")),
    "stop_regex": ListOf(item=Str(max_bytes=MAX_STOP_REGEX_BYTES), max_items=MAX_STOP_STRINGS,
                         bare=True),
    "temperature": Number(lo=0, description="below 1e-6 means greedy"),
    "top_p": Number(lo=0, lo_open=True, hi=1),
    "top_k": Int(lo=-1, description="-1 or 0: all tokens"),
    "min_p": Number(lo=0, hi=1),
    "frequency_penalty": Number(lo=-2, hi=2),
    "presence_penalty": Number(lo=-2, hi=2),
    # Not just > 0: logits divided by a penalty under ~1e-30 overflow float32 to inf (NaN probs).
    "repetition_penalty": Number(lo=MIN_REPETITION_PENALTY, hi=2),
    "ignore_eos": Bool(),
    "skip_special_tokens": Bool(),
    "spaces_between_special_tokens": Bool(),
    "no_stop_trim": Bool(),
    "logit_bias": Object(values=Number(lo=-100, hi=100),
                         description="token id (as a string, in the vocabulary) -> bias"),
    "sampling_seed": Int(lo=-(1 << 63), hi=(1 << 63) - 1),  # int64, as SGLang
    "stream_interval": Int(lo=1),
    "custom_params": Object(),
    "complete_within_budget": Bool(description="constrained outputs: always a full match within "
                                               "max_new_tokens (default: on where the grammar's backend can)"),
    "end_on_reject": Bool(description="constrained outputs: end a complete match where the model's "
                                      "choice falls on tokens the grammar forbids (default: on for "
                                      "regex, choices and ebnf, off for json_schema)"),
}
_FIELDS = {f.name: f for f in dataclasses.fields(SamplingParams)}


def choice_seed(seed: int, index: int) -> int:
    """The seed of choice `index` of a request seeded with `seed`: `seed` itself for choice 0,
    else a 64-bit hash of (seed, index). A cryptographic hash rather than `seed + index`, so
    that choice 1 of seed 7 is not choice 0 of seed 8; stable across runs and machines
    (Python's own `hash` is salted per process)."""
    if index == 0:
        return seed
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)  # int64, like every sampling_seed


def _default(name: str) -> Any:
    f = _FIELDS[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default
