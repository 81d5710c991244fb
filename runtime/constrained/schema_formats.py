"""String formats rewritten as the patterns that values of them are written in.

outlines-core's regex for `"format": "email"` is RFC 5322's whole grammar: quoted local
parts with escapes, IP-literal domains. Its automaton is large, and multiplied by every
place a schema allows an address (an array of attendees with optional emails) it pushes a
tool's schema past what the regex backend builds in memory, onto the backend that cannot
complete an output within max_tokens. Every address of the plain pattern below is valid
under RFC 5322, and it is the form addresses are written in; its automaton is a few states.
"""

from __future__ import annotations

from typing import Any

_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
EMAIL_PATTERN = rf"[a-z0-9_%+-]+(?:\.[a-z0-9_%+-]+)*@{_LABEL}(?:\.{_LABEL})+"
PLAIN_FORMATS = {"email": EMAIL_PATTERN}


def plain_formats(schema: Any) -> Any:
    """`schema` with each string format of PLAIN_FORMATS (without its own pattern) replaced by
    that format's pattern."""
    if isinstance(schema, list):
        return [plain_formats(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (v if k in ("enum", "const") else plain_formats(v)) for k, v in schema.items()}
    fmt = out.get("format")
    if isinstance(fmt, str) and fmt in PLAIN_FORMATS and "pattern" not in out:
        del out["format"]
        out["pattern"] = PLAIN_FORMATS[fmt]
    return out
