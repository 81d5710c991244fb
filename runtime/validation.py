"""Field rules: what one request field accepts, checked and described in one place.

    MAX_TOKENS = Int(lo=0, description="default 16")
    n = MAX_TOKENS.check("max_tokens", body.get("max_tokens"), default=16)  # ValueError naming it
    MAX_TOKENS.schema()  # its JSON-schema fragment, for /openapi.json (http/openapi_spec.py)

The endpoints (http/generate_input.py, http/openai_api.py) and `SamplingParams.validate`
keep one table of rules each, and openapi_spec.py builds the request schemas from the same
tables, so the description cannot drift from the checks. `check` takes the field's name as
the client wrote it (`seed` on the OpenAI routes, `sampling_seed` on /generate): the message
names what the client sent and says what to send instead. Rules check one field; checks
across fields (min <= max, at most one constraint) stay with the code that owns them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

Schema = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Rule:
    """Base of the rules. `nullable`: null (or an absent key, via `body.get`) means the
    default; otherwise null is refused like any other wrong type."""

    nullable: bool = True
    description: str = ""

    what = "a value"  # with its article, for "x must be an integer (got ...)"
    plural = "values"

    def check(self, name: str, value: Any, default: Any = None) -> Any:
        """`value` checked; `default` for a null when nullable. ValueError naming `name` when
        the value is refused."""
        if value is None and self.nullable:
            return default
        return self._check(name, value)

    def schema(self) -> Schema:
        """The JSON-schema fragment of the values `check` accepts (with null when nullable)."""
        s = self._schema()
        if self.nullable:
            s = {"anyOf": [s, {"type": "null"}]}
        if self.description:
            s["description"] = self.description
        return s

    def _refused(self, name: str, value: Any) -> ValueError:
        return ValueError(f"{name} must be {self.what} (got {value!r})")

    def _check(self, name: str, value: Any) -> Any:
        raise NotImplementedError

    def _schema(self) -> Schema:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class Int(Rule):
    """An integer literal in [lo, hi]. 5.0 is refused on every route, with a message saying
    to send 5: the OpenAI routes always refused it, /generate took it, and one rule for both
    keeps a client's request valid or invalid wherever it is sent."""

    lo: int | None = None
    hi: int | None = None

    what = "an integer"
    plural = "integers"

    def _check(self, name: str, value: Any) -> int:
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            raise ValueError(f"{name} must be an integer literal (got {value!r}); send {int(value)}")
        if not isinstance(value, int) or isinstance(value, bool):  # True is an int to Python
            raise self._refused(name, value)
        if self.lo is not None and value < self.lo:
            raise ValueError(f"{name} must be >= {self.lo} (got {value})")
        if self.hi is not None and value > self.hi:
            raise ValueError(f"{name} must be <= {self.hi} (got {value})")
        return value

    def _schema(self) -> Schema:
        s: Schema = {"type": "integer"}
        if self.lo is not None:
            s["minimum"] = self.lo
        if self.hi is not None:
            s["maximum"] = self.hi
        return s

    def schema(self) -> Schema:
        s = super().schema()
        # JSON Schema counts 5.0 as an integer; this check does not.
        literal = "(an integer literal: 5, not 5.0)"
        s["description"] = f"{self.description} {literal}" if self.description else literal
        return s


@dataclass(frozen=True, kw_only=True)
class Number(Rule):
    """A finite number in [lo, hi], or (lo, hi] with `lo_open`."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False

    what = "a number"
    plural = "numbers"

    def _check(self, name: str, value: Any) -> float | int:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self._refused(name, value)
        if not math.isfinite(value):  # only from Python: the JSON body refuses NaN and 1e309
            raise ValueError(f"{name} must be finite (got {value})")
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            bound = ">" if self.lo_open else ">="
            raise ValueError(f"{name} must be {bound} {self.lo} (got {value})")
        if self.hi is not None and value > self.hi:
            raise ValueError(f"{name} must be <= {self.hi} (got {value})")
        return value

    def _schema(self) -> Schema:
        s: Schema = {"type": "number"}
        if self.lo is not None:
            s["exclusiveMinimum" if self.lo_open else "minimum"] = self.lo
        if self.hi is not None:
            s["maximum"] = self.hi
        return s


@dataclass(frozen=True, kw_only=True)
class Bool(Rule):
    """true or false; 0, 1 and "" are not booleans."""

    what = "a boolean"
    plural = "booleans"

    def _check(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self._refused(name, value)
        return value

    def _schema(self) -> Schema:
        return {"type": "boolean"}


@dataclass(frozen=True, kw_only=True)
class Str(Rule):
    """A string of at least `min_len` characters and at most `max_bytes` bytes of UTF-8."""

    min_len: int = 0
    max_bytes: int | None = None

    what = "a string"
    plural = "strings"

    def _check(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self._refused(name, value)
        if len(value) < self.min_len:
            need = "not be empty" if self.min_len == 1 else f"have {self.min_len}+ characters"
            raise ValueError(f"{name} must {need} (got {value!r})")
        if self.max_bytes is not None and len(value.encode()) > self.max_bytes:
            raise ValueError(f"{name} must be at most {self.max_bytes} bytes of UTF-8 "
                             f"(got {value!r})")
        return value

    def _schema(self) -> Schema:
        s: Schema = {"type": "string"}
        if self.min_len:
            s["minLength"] = self.min_len
        if self.max_bytes is not None:
            # A string within max_bytes has at most max_bytes characters: a sound bound.
            s["maxLength"] = self.max_bytes
        return s


@dataclass(frozen=True, kw_only=True)
class ListOf(Rule):
    """A list whose entries each pass `item` (checked as `name[i]`; a null entry is refused),
    at most `max_items` long. `bare`: one string may be sent on its own (`"stop": "\\n"`)."""

    item: Rule
    max_items: int | None = None
    bare: bool = False

    plural = "lists"

    def __post_init__(self) -> None:
        object.__setattr__(self, "item", _entry(self.item))

    @property
    def what(self) -> str:  # type: ignore[override]
        listed = f"a list of {self.item.plural}"
        return f"{self.item.what} or {listed}" if self.bare else listed

    def _check(self, name: str, value: Any) -> list:
        if self.bare and isinstance(value, str):
            return [self.item.check(name, value)]
        if not isinstance(value, (list, tuple)):  # tuples: Engine callers in Python
            raise self._refused(name, value)
        if self.max_items is not None and len(value) > self.max_items:
            raise ValueError(f"{name} may have at most {self.max_items} entries (got {len(value)})")
        return [self.item.check(f"{name}[{i}]", x) for i, x in enumerate(value)]

    def _schema(self) -> Schema:
        s: Schema = {"type": "array", "items": self.item.schema()}
        if self.max_items is not None:
            s["maxItems"] = self.max_items
        return {"anyOf": [self.item.schema(), s]} if self.bare else s


@dataclass(frozen=True, kw_only=True)
class Object(Rule):
    """A JSON object; with `values`, each value passes it (checked as `name[key]`; a null value
    is refused). Keys are the caller's to check (logit_bias parses its keys as token ids)."""

    values: Rule | None = None

    what = "an object"
    plural = "objects"

    def __post_init__(self) -> None:
        if self.values is not None:
            object.__setattr__(self, "values", _entry(self.values))

    def _check(self, name: str, value: Any) -> dict:
        if not isinstance(value, dict):
            raise self._refused(name, value)
        if self.values is None:
            return value
        return {k: self.values.check(f"{name}[{k}]", v) for k, v in value.items()}

    def _schema(self) -> Schema:
        s: Schema = {"type": "object"}
        if self.values is not None:
            s["additionalProperties"] = self.values.schema()
        return s


def _entry(rule: Rule) -> Rule:
    """`rule` for an entry of a list or object: there, null is no default but a wrong type."""
    return replace(rule, nullable=False) if rule.nullable else rule
