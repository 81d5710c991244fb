"""The soak's request mix: what each request asks, on which API, and how its client behaves.

A `Plan` is one request to send. Plans are drawn from a seeded RNG so a run is repeatable:
- API: native `/generate`, OpenAI `/v1/chat/completions`, OpenAI `/v1/completions`;
- streaming or not;
- prompt: a question after one of three long few-shot prefixes (~250 tokens each, shared by
  many requests: radix hits, and eviction once the pool is tight) or a short free prompt;
- constraint (native only): a regex, a JSON schema or a choice list;
- greedy (temperature 0, drawn from a small fixed pool so each can be checked against its
  single-request answer) or sampled;
- client behaviour: read to the end, leave a stream after a few events, or time out early;
- hostile (a share, off by default): constraints built to hurt the server (a huge bounded
  repetition, a 2000-character maxLength, an exponential regex, a backtracking stop_regex).
  Any answer is fine for them (200, 400 or 503); the well-formed requests beside them must
  lose nothing and keep their latency.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

NATIVE, CHAT, COMPLETIONS = "native", "chat", "completions"
PATHS = {NATIVE: "/generate", CHAT: "/v1/chat/completions", COMPLETIONS: "/v1/completions"}

STAY, LEAVE_STREAM, TIMEOUT = "stay", "leave_stream", "timeout"

REGEX = r"(yes|no), [a-z]{1,10}\."
JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 12},
        "level": {"enum": ["low", "mid", "high"]},
        "member": {"type": "boolean"},
    },
    "required": ["name", "level", "member"],
    "additionalProperties": False,
}
CHOICES = ["red", "green", "blue", "yellow"]
CONSTRAINED_PROMPTS = {
    "regex": "Is the sea salty? Answer yes or no and one word why:",
    "json_schema": "Describe a club member as JSON with name, level and member:",
    "choices": "Name the colour of a ripe banana:",
}
CONSTRAINED_MAX_NEW = 48  # the longest valid JSON above is ~35 tokens: never cut by length
# (sampling params, prompt): the patterns of the reliability work's findings.
HOSTILE = [
    ({"regex": ".{8000}"}, "Write:"),
    ({"json_schema": json.dumps({"type": "object", "properties": {"essay": {
        "type": "string", "maxLength": 2000}}, "required": ["essay"]})}, "Write an essay as JSON:"),
    ({"regex": "(a|b)*a(a|b){16}"}, "Write:"),
    ({"regex": "a{28}", "stop_regex": ["(a+)+b"]}, "Write:"),
]


def _arithmetic(i: int) -> tuple[str, str]:
    a, b = 3 + 7 * i % 41, 2 + 5 * i % 37
    return f"What is {a} plus {b}?", str(a + b)


CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"),
            ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Canada", "Ottawa"),
            ("Norway", "Oslo"), ("Chile", "Santiago"), ("Greece", "Athens"), ("Cuba", "Havana")]
ANTONYMS = [("hot", "cold"), ("up", "down"), ("early", "late"), ("full", "empty"), ("fast", "slow"),
            ("light", "dark"), ("open", "closed"), ("happy", "sad"), ("strong", "weak"),
            ("rich", "poor"), ("wet", "dry"), ("loud", "quiet")]


def _few_shot(title: str, pairs: list[tuple[str, str]]) -> str:
    body = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in pairs)
    return f"{title}\n\n{body}"


def few_shot_prefixes() -> list[tuple[str, list[str]]]:
    """(prefix, questions): three long shared prefixes, each with questions to ask after it."""
    arith = [_arithmetic(i) for i in range(40)]
    capitals = [(f"What is the capital of {c}?", k) for c, k in CAPITALS]
    antonyms = [(f"What is the opposite of {w}?", o) for w, o in ANTONYMS]
    return [
        (_few_shot("Answer each sum with a number.", arith[:12]), [q for q, _ in arith[12:]]),
        (_few_shot("Name the capital city.", capitals[:8] * 2), [q for q, _ in capitals[8:]]
         + ["What is the capital of Germany?", "What is the capital of Brazil?"]),
        (_few_shot("Give the opposite word.", antonyms[:8] * 2), [q for q, _ in antonyms[8:]]
         + ["What is the opposite of old?", "What is the opposite of near?"]),
    ]


FREE_PROMPTS = ["Write a haiku about rain.", "List three fruits.", "Tell me a fact about owls.",
                "What is a good name for a cat?", "Describe the moon in one sentence.",
                "Why do leaves fall in autumn?"]


@dataclass(frozen=True)
class Prompt:
    prefix: str  # the shared few-shot part ("" for a free prompt)
    question: str

    @property
    def text(self) -> str:
        return f"{self.prefix}Q: {self.question}\nA:" if self.prefix else self.question


@dataclass
class Plan:
    api: str
    stream: bool
    prompt: Prompt
    max_new_tokens: int
    greedy: bool
    constraint: tuple[str, Any] | None = None  # ("regex" | "json_schema" | "choices", spec)
    stop: list[str] = field(default_factory=list)
    behaviour: str = STAY
    leave_after_events: int = 0  # LEAVE_STREAM: events read before closing
    timeout_s: float = 0.0  # TIMEOUT: the client gives up after this long
    hostile: dict | None = None  # the extra sampling params of a hostile request

    @property
    def path(self) -> str:
        return PATHS[self.api]

    @property
    def greedy_key(self) -> str:
        """Same key = same answer expected: everything but streaming and client behaviour."""
        return json.dumps([self.api, self.prompt.text, self.max_new_tokens, self.constraint, self.stop])

    def body(self) -> dict:
        return {NATIVE: self._native_body, CHAT: self._chat_body,
                COMPLETIONS: self._completions_body}[self.api]()

    def _sampling(self) -> dict:
        return {"temperature": 0.0} if self.greedy else {"temperature": 0.8, "top_p": 0.95}

    def _native_body(self) -> dict:
        params = {"max_new_tokens": self.max_new_tokens, "stop": self.stop, **self._sampling(),
                  **(self.hostile or {})}
        if self.constraint:
            kind, spec = self.constraint
            params[kind] = json.dumps(spec) if kind == "json_schema" else spec
        return {"text": self.prompt.text, "stream": self.stream, "sampling_params": params}

    def _chat_body(self) -> dict:
        messages = [{"role": "user", "content": self.prompt.question}]
        if self.prompt.prefix:
            messages.insert(0, {"role": "system", "content": self.prompt.prefix})
        return {"model": "default", "messages": messages, "max_tokens": self.max_new_tokens,
                "stream": self.stream, "stop": self.stop, **self._sampling()}

    def _completions_body(self) -> dict:
        return {"model": "default", "prompt": self.prompt.text, "max_tokens": self.max_new_tokens,
                "stream": self.stream, "stop": self.stop, **self._sampling()}


@dataclass(frozen=True)
class Mix:
    """Shares of the request mix (each in [0, 1])."""

    max_new_tokens: int = 16
    greedy_pool: int = 18  # distinct greedy requests, each also sent alone for reference
    greedy_share: float = 0.4
    stream_share: float = 0.5
    few_shot_share: float = 0.7
    constrained_share: float = 0.25  # of native requests
    leave_share: float = 0.1  # of streaming requests
    timeout_share: float = 0.06
    timeout_range_s: tuple[float, float] = (0.2, 3.0)
    hostile_share: float = 0.0


class Workload:
    """Draws plans; `greedy_plans()` are the fixed pool that greedy soak requests come from.

    The first plans cover the whole mix once (every API streamed and not, every constraint
    kind, both disconnects), so even a short soak exercises all of it; the rest are random.
    """

    def __init__(self, mix: Mix, seed: int) -> None:
        self.mix = mix
        self.rng = random.Random(seed)
        self.prefixes = few_shot_prefixes()
        kinds = list(CONSTRAINED_PROMPTS)  # every constraint kind is also checked greedy
        self._greedy = [self._constrained(k, greedy=True) for k in kinds]
        self._greedy += [self._draw_base(greedy=True) for _ in range(mix.greedy_pool - len(kinds))]
        self._forced = self._coverage_plans()

    def greedy_plans(self) -> list[Plan]:
        """One plan per distinct greedy request (non-streaming, client stays)."""
        unique = {p.greedy_key: p for p in self._greedy}
        return [self._variant(p, stream=False) for p in unique.values()]

    def next(self) -> Plan:
        if self._forced:
            return self._forced.pop(0)
        m, rng = self.mix, self.rng
        if rng.random() < m.hostile_share:
            params, prompt = rng.choice(HOSTILE)
            return Plan(NATIVE, rng.random() < m.stream_share, Prompt("", prompt), m.max_new_tokens, False,
                        hostile=params)
        base = rng.choice(self._greedy) if rng.random() < m.greedy_share else self._draw_base(False)
        stream = rng.random() < m.stream_share
        plan = self._variant(base, stream=stream)
        if stream and rng.random() < m.leave_share:
            plan.behaviour, plan.leave_after_events = LEAVE_STREAM, rng.randint(1, 3)
        elif rng.random() < m.timeout_share:
            plan.behaviour, plan.timeout_s = TIMEOUT, rng.uniform(*m.timeout_range_s)
        return plan

    def _coverage_plans(self) -> list[Plan]:
        plans = [self._variant(self._draw_base(False, api, few_shot=True), stream=stream)
                 for api in PATHS for stream in (False, True)]
        plans += [self._constrained(kind, greedy=False) for kind in CONSTRAINED_PROMPTS]
        leave = self._variant(self._draw_base(False, NATIVE, few_shot=False), stream=True)
        leave.behaviour, leave.leave_after_events = LEAVE_STREAM, 1
        timeout = self._draw_base(False, CHAT, few_shot=True)
        timeout.behaviour, timeout.timeout_s = TIMEOUT, self.mix.timeout_range_s[0]
        return plans + [leave, timeout]

    def _draw_base(self, greedy: bool, api: str | None = None, few_shot: bool | None = None) -> Plan:
        m, rng = self.mix, self.rng
        api = api or rng.choice([NATIVE, NATIVE, CHAT, COMPLETIONS])
        if few_shot is None and api == NATIVE and rng.random() < m.constrained_share:
            return self._constrained(rng.choice(list(CONSTRAINED_PROMPTS)), greedy)
        if few_shot if few_shot is not None else rng.random() < m.few_shot_share:
            prefix, questions = rng.choice(self.prefixes)
            return Plan(api, False, Prompt(prefix, rng.choice(questions)), m.max_new_tokens, greedy,
                        stop=["\n"])
        return Plan(api, False, Prompt("", rng.choice(FREE_PROMPTS)), m.max_new_tokens, greedy)

    @staticmethod
    def _constrained(kind: str, greedy: bool) -> Plan:
        spec = {"regex": REGEX, "json_schema": JSON_SCHEMA, "choices": CHOICES}[kind]
        return Plan(NATIVE, False, Prompt("", CONSTRAINED_PROMPTS[kind]), CONSTRAINED_MAX_NEW,
                    greedy, (kind, spec))

    @staticmethod
    def _variant(base: Plan, stream: bool) -> Plan:
        """A copy of `base` sent with this streaming choice; the client stays to the end."""
        return Plan(base.api, stream, base.prompt, base.max_new_tokens, base.greedy,
                    base.constraint, list(base.stop))
