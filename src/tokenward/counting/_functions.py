"""Token overhead of OpenAI function/tool definitions.

OpenAI renders function definitions into the prompt as a TypeScript-like
``namespace functions { ... }`` block. This module reproduces that rendering and the
constant overheads found by reverse engineering (hmarr/openai-chat-tokens, MIT; its
published example counts are checked in our tests), which also reproduces the OpenAI
cookbook's tool example (105 prompt tokens with cl100k models, 101 with gpt-4o):

* rendered block tokens + 9 per request that carries functions;
* the first system message gains a trailing newline;
* minus 4 when there is a system message (the functions block reuses it);
* ``tool_choice``/``function_call``: "none" +1, a named function +4 + name tokens.

This is a formula, not a tokenizer: OpenAI may change the rendering. Nested schemas beyond
what the examples cover (``$ref``, ``oneOf``...) are rendered best-effort.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["normalize_tools", "render_functions"]


def normalize_tools(tools: Sequence[Any] | None) -> list[Mapping[str, Any]]:
    """OpenAI ``tools`` (``{"type": "function", "function": {...}}``) or legacy
    ``functions`` dicts -> list of function definitions."""
    out: list[Mapping[str, Any]] = []
    for t in tools or ():
        if not isinstance(t, Mapping):
            # pydantic models / objects exposing model_dump() (e.g. openai SDK types)
            dump = getattr(t, "model_dump", None)
            if dump is None:
                raise TypeError(f"tool definitions must be dicts, got {type(t).__name__}")
            t = dump()
        fn = t.get("function") if t.get("type", "function") == "function" else None
        if isinstance(fn, Mapping):
            out.append(fn)
        elif "name" in t:
            out.append(t)
        # other tool types (web_search, code_interpreter...) have no published formula
    return out


def _format_type(p: Mapping[str, Any], indent: int) -> str:
    any_of = p.get("anyOf") or p.get("oneOf")
    if isinstance(any_of, list):
        return " | ".join(_format_type(v, indent) for v in any_of if isinstance(v, Mapping))
    t = p.get("type")
    if isinstance(t, list):  # ["string", "null"]
        return " | ".join(_format_type({**p, "type": x}, indent) for x in t)
    enum = p.get("enum")
    if t == "string" or (t is None and enum and all(isinstance(v, str) for v in enum)):
        if enum:
            return " | ".join(f'"{v}"' for v in enum)
        return "string"
    if t in ("number", "integer"):
        if enum:
            return " | ".join(str(v) for v in enum)
        return "number"
    if t == "boolean":
        return "boolean"
    if t == "null":
        return "null"
    if t == "object" or "properties" in p:
        return "\n".join(["{", _format_properties(p, indent + 2), "}"])
    if t == "array":
        items = p.get("items")
        if isinstance(items, Mapping):
            return f"{_format_type(items, indent)}[]"
        return "any[]"
    return "any"


def _format_properties(obj: Mapping[str, Any], indent: int) -> str:
    required = obj.get("required") or ()
    lines: list[str] = []
    for name, param in (obj.get("properties") or {}).items():
        if not isinstance(param, Mapping):
            param = {}
        desc = param.get("description")
        if desc and indent < 2:
            lines.append(f"// {desc}")
        opt = "" if name in required else "?"
        lines.append(f"{name}{opt}: {_format_type(param, indent)},")
    pad = " " * indent
    return "\n".join(pad + line for line in lines)


def render_functions(functions: Sequence[Mapping[str, Any]]) -> str:
    """The ``namespace functions {...}`` text OpenAI injects for these definitions."""
    lines = ["namespace functions {", ""]
    for f in functions:
        desc = f.get("description")
        if desc:
            lines.append(f"// {desc}")
        params = f.get("parameters") or {}
        if params.get("properties"):
            lines.append(f"type {f.get('name', '')} = (_: {{")
            lines.append(_format_properties(params, 0))
            lines.append("}) => any;")
        else:
            lines.append(f"type {f.get('name', '')} = () => any;")
        lines.append("")
    lines.append("} // namespace functions")
    return "\n".join(lines)
