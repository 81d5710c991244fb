"""The constraints the structured-output guarantee is tested on: 25 JSON schemas and 13
regexes, chosen to cover what agents send (docs/structured-output.md): nested objects,
arrays with bounds, enums, numbers, nullable unions, string patterns and lengths, unicode,
recursive `$ref`. Every regex here means the same to Python's `re` and to Rust's `regex`."""

from __future__ import annotations

PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}

SCHEMAS: dict[str, dict] = {
    "flat object": PERSON,
    "nested objects": {"type": "object", "properties": {"person": {"type": "object", "properties": {
        "name": {"type": "string"},
        "address": {"type": "object", "properties": {"city": {"type": "string"},
                                                     "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                    "required": ["city", "zip"]}}, "required": ["name", "address"]}}, "required": ["person"]},
    "array of 1-3 strings": {"type": "object", "properties": {"tags": {
        "type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3}}, "required": ["tags"]},
    "array of exactly 2 objects": {"type": "object", "properties": {"people": {
        "type": "array", "items": PERSON, "minItems": 2, "maxItems": 2}}, "required": ["people"]},
    "array of 2-5 integers": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 5},
    "string enum": {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}},
                    "required": ["color"]},
    "unicode enum": {"type": "object", "properties": {"word": {"enum": ["café", "naïve", "日本語"]}},
                     "required": ["word"]},
    "integer enum": {"type": "object", "properties": {"level": {"enum": [1, 2, 3]}}, "required": ["level"]},
    "number": {"type": "object", "properties": {"price": {"type": "number"}}, "required": ["price"]},
    "integer": {"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]},
    "boolean": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
    "nullable integer": {"type": "object", "properties": {"value": {"type": ["integer", "null"]}},
                         "required": ["value"]},
    "anyOf string or number": {"type": "object", "properties": {"x": {"anyOf": [{"type": "string"},
                                                                                {"type": "number"}]}},
                               "required": ["x"]},
    "string pattern": {"type": "object", "properties": {"code": {"type": "string",
                                                                 "pattern": "^[A-Z]{3}-[0-9]{2}$"}},
                       "required": ["code"]},
    "string max length 20": {"type": "object", "properties": {"title": {"type": "string", "maxLength": 20}},
                             "required": ["title"]},
    "string length 3-10": {"type": "object", "properties": {"nick": {"type": "string", "minLength": 3,
                                                                     "maxLength": 10}}, "required": ["nick"]},
    "const": {"type": "object", "properties": {"kind": {"const": "event"}, "n": {"type": "integer"}},
              "required": ["kind", "n"]},
    "optional properties": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}},
    "nested arrays": {"type": "object", "properties": {"grid": {"type": "array", "maxItems": 2, "items": {
        "type": "array", "items": {"type": "integer"}, "maxItems": 2}}}, "required": ["grid"]},
    "date format": {"type": "object", "properties": {"day": {"type": "string", "format": "date"}},
                    "required": ["day"]},
    "uuid format": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}},
                    "required": ["id"]},
    "record of six fields": {"type": "object", "properties": {
        "title": {"type": "string"}, "director": {"type": "string"}, "year": {"type": "integer"},
        "rating": {"type": "number"}, "genres": {"type": "array", "items": {"enum": ["drama", "comedy"]},
                                                 "maxItems": 2},
        "available": {"type": "boolean"}},
        "required": ["title", "director", "year", "rating", "genres", "available"]},
    "oneOf two objects": {"oneOf": [
        {"type": "object", "properties": {"cat": {"type": "string"}}, "required": ["cat"]},
        {"type": "object", "properties": {"dog": {"type": "integer"}}, "required": ["dog"]}]},
    "recursive tree": {"$defs": {"node": {"type": "object", "properties": {
        "value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "required": ["value"]}}, "$ref": "#/$defs/node"},
    "recursive linked list": {"type": "object", "properties": {
        "v": {"type": "integer"}, "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}}, "required": ["v", "next"]},
}

REGEXES: dict[str, str] = {
    "phone number": r"[0-9]{3}-[0-9]{4}",
    "email (unbounded parts)": r"[a-z]+@[a-z]+\.(com|org)",
    "alternation": r"(yes|no|maybe)",
    "one or two names": r"[A-Z][a-z]{2,8}( [A-Z][a-z]{2,8})?",
    "iso date": r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
    "decimal number": r"(0|[1-9][0-9]*)(\.[0-9]+)?",
    "words (unbounded)": r"[a-z]+( [a-z]+)*",
    "repeated pairs": r"(ab|cd)+",
    "hex color": r"#[0-9a-f]{6}",
    "unicode alternation": r"(café|naïve|日本語)",
    "ipv4 (bounded)": r"[0-9]{1,3}(\.[0-9]{1,3}){3}",
    "quoted string up to 20": r'"[^"]{0,20}"',
    "cjk characters": r"[一-龥]{1,5}",
}
