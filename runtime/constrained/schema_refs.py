"""Local `$ref`s of a JSON schema inlined, recursion unrolled to a bounded depth.

A recursive schema (a tree whose children are nodes, a linked list whose `next` is the
list) has no regex; unrolled to `depth` nestings it has one, and every output of the
unrolled schema is an instance of the original. outlines-core bounds recursion itself, but
at the bound it leaves a separator behind (`{"v":1,}`), so we bound it first, here, where
the cut can be made in the schema's own terms: past the depth a reference matches nothing
(`NEVER`), and that propagates: an optional property that can never match is dropped, an
`anyOf` / `oneOf` branch removed, an array whose items never match may only be empty, and
a required part that can never match makes its parent never match.

    bounded = inline_refs(schema, depth=3)   # ValueError if no bounded instance exists
"""

from __future__ import annotations

from typing import Any

NEVER = object()  # the schema that no value matches


def inline_refs(schema: Any, depth: int) -> Any:
    """`schema` with every local `$ref` (`#`, `#/$defs/...`, `#/definitions/...`) replaced
    by its target, each reference followed at most `depth` times on any path."""
    out = _expand(schema, schema, depth, ())
    if out is NEVER:
        raise ValueError(f"the schema's recursion cannot end within {depth} levels: some "
                         "reference must always be followed (make it optional or nullable)")
    if isinstance(out, dict):
        out = {k: v for k, v in out.items() if k not in ("$defs", "definitions")}
    return out


def _expand(node: Any, root: Any, depth: int, stack: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_expand(x, root, depth, stack) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        if stack.count(ref) >= depth:
            return NEVER
        target = _resolve(root, ref)
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        merged = {**target, **siblings} if isinstance(target, dict) else target
        return _expand(merged, root, depth, (*stack, ref))
    expanded = {k: (v if k in ("$defs", "definitions", "enum", "const") else _expand(v, root, depth, stack))
                for k, v in node.items()}
    return _prune(expanded)


def _resolve(root: Any, ref: str) -> Any:
    node = root
    for part in ref[1:].split("/")[1:] if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"the reference $ref {ref!r} names nothing in the schema")
        node = node[part]
    return node


def _prune(node: dict) -> Any:
    """Propagate NEVER up from the children of one schema object."""
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            branches = [b for b in node[key] if b is not NEVER]
            if not branches:
                return NEVER
            node[key] = branches
    if isinstance(node.get("allOf"), list) and any(b is NEVER for b in node["allOf"]):
        return NEVER
    props = node.get("properties")
    if isinstance(props, dict):
        required = set(node.get("required") or ())
        if any(props[p] is NEVER for p in required if p in props):
            return NEVER
        node["properties"] = {p: s for p, s in props.items() if s is not NEVER}
    if node.get("items") is NEVER:
        if (node.get("minItems") or 0) > 0:
            return NEVER
        del node["items"]
        node["maxItems"] = 0
    if any(v is NEVER for v in node.values()):  # any other place a schema can sit
        return NEVER
    return node
