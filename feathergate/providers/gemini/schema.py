"""JSON Schema -> the OpenAPI 3.0 subset Gemini takes in ``functionDeclarations[].parameters``.

Gemini parses ``parameters`` into a proto, so every keyword outside its
``Schema`` message is a 400 "Unknown name ... Cannot find field", and a type
array is "Proto field is not repeating" (PROTOCOLS.md §3.2, §4.8.12). Tool
schemas come from pydantic, zod and hand-written JSON Schema, so the cleaner
converts what has a Gemini spelling and drops the rest:

* ``$ref`` is inlined from ``$defs``/``definitions``; a recursive reference
  stops at ``{"type": "object"}`` (Gemini has no references at all). Inlining
  is budgeted: a chain of definitions that each use the next twice doubles at
  every link (2 KB of schema, a million nodes), so one request's tools may
  inline at most :data:`MAX_INLINED` nodes between them, and past that the
  tool is a 400;
* ``const`` becomes a one-value ``enum``, ``oneOf`` becomes ``anyOf`` and
  ``allOf`` is merged into its parent;
* ``["string", "null"]``, ``anyOf [X, {"type": "null"}]`` and ``null`` in an
  ``enum`` become ``nullable: true``; ``["string", "integer"]`` becomes an
  ``anyOf`` with a branch per type;
* ``anyOf`` stands alone: title and description move into its branches;
* enums are string-only in Gemini: values are stringified, and an enum on a
  non-string type moves into the description rather than changing the type;
* ``exclusiveMinimum``/``exclusiveMaximum`` become inclusive bounds (exact
  for integers); unknown ``format`` values are dropped (Gemini rejects them);
* ``required`` names without a property are dropped ("property is not
  defined"); a schema with ``properties`` gets ``type: object``.

``parametersJsonSchema`` would take the schema unchanged, but only newer
models accept it; ``parameters`` works everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from feathergate.errors import InvalidRequest

__all__ = ["MAX_INLINED", "InlineBudget", "clean_parameters"]

MAX_INLINED = 10_000
"""Schema nodes ``$ref`` inlining may produce for one request, all its tools together.

Generous (a def of 50 nodes used 200 times) yet bounded: about 5 µs a node,
so the worst request costs some 50 ms.
"""

# The fields of Gemini's `Schema` message (v1beta).
# fmt: off
_KEYWORDS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
    "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
    "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum",
})
# fmt: on
_FORMATS = {
    "string": {"enum", "date-time"},
    "integer": {"int32", "int64"},
    "number": {"float", "double"},
}
_NULL: dict[str, Any] = {"nullable": True}


@dataclass(slots=True)
class InlineBudget:
    """What is left of :data:`MAX_INLINED` for one request."""

    remaining: int = MAX_INLINED


def clean_parameters(
    schema: Any, param: str, budget: InlineBudget | None = None
) -> dict[str, Any] | None:
    """The cleaned schema, or ``None`` when there is nothing left to declare.

    An object without properties is left out: Gemini answers
    "properties: should be non-empty for OBJECT type". ``budget`` is shared
    by the tools of one request.
    """
    if not isinstance(schema, Mapping):
        raise InvalidRequest(f"{param} must be a JSON Schema object", param=param)
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        if isinstance(schema.get(key), Mapping):
            defs.update(schema[key])
    cleaner = _Cleaner(defs, param, budget if budget is not None else InlineBudget())
    try:
        cleaned = cleaner.clean(schema, ())
    except RecursionError:
        # A long chain of references, each nesting a little: the client's
        # schema, not our stack, is what is too deep.
        raise InvalidRequest(
            f"{param}: the schema nests too deeply once its $refs are inlined", param=param
        ) from None
    if cleaned.get("type") == "object" and not cleaned.get("properties"):
        return None
    return cleaned


class _Cleaner:
    def __init__(self, defs: Mapping[str, Any], param: str, budget: InlineBudget) -> None:
        self._defs = defs
        self._param = param
        self._budget = budget

    def clean(self, node: Any, refs: tuple[str, ...]) -> dict[str, Any]:
        if refs:  # a node inlined from a definition: the copies are what can explode
            self._budget.remaining -= 1
            if self._budget.remaining < 0:
                raise InvalidRequest(
                    f"{self._param}: inlining its $refs for gemini makes more than "
                    f"{MAX_INLINED} schema nodes (the request's tools together)",
                    param=self._param,
                )
        if not isinstance(node, Mapping):
            return {}  # `true`: no constraint to carry over
        node = dict(node)
        ref = node.pop("$ref", None)
        if isinstance(ref, str):
            return {**self._resolve(ref, refs), **self.clean(node, refs)}
        all_of = node.pop("allOf", None)
        if isinstance(all_of, list):
            merged: dict[str, Any] = {}
            for sub in all_of:
                merged.update(self.clean(sub, refs))
            node = {**merged, **node}
        if "oneOf" in node and "anyOf" not in node:
            node["anyOf"] = node.pop("oneOf")
        if "const" in node and "enum" not in node:
            node["enum"] = [node.pop("const")]
        kind = node.pop("type", None)
        kinds = kind if isinstance(kind, list) else [] if kind is None else [kind]
        real = [str(k) for k in kinds if k != "null"]
        nullable = len(real) < len(kinds)
        if len(real) > 1:  # ["string", "integer"]: a branch per type, each keeping its keywords
            rest = {k: v for k, v in node.items() if k not in ("anyOf", "title", "description")}
            node["anyOf"] = [{**rest, "type": t} for t in real]
        elif real:
            node["type"] = real[0]
        if isinstance(node.get("anyOf"), list):
            return self._any_of(node, refs, nullable)
        out = self._keywords(node, refs)
        nullable |= self._enum(node, out)
        if nullable:
            out["nullable"] = True
        return out

    def _any_of(
        self, node: dict[str, Any], refs: tuple[str, ...], nullable: bool
    ) -> dict[str, Any]:
        """``anyOf`` stands alone in Gemini: siblings make Vertex answer 400 (litellm #11164)."""
        branches = [self.clean(sub, refs) for sub in node.pop("anyOf")]
        nullable |= _NULL in branches
        branches = [b for b in branches if b != _NULL]
        if len(branches) == 1:
            merged = {**branches[0], **self.clean(node, refs)}
            return {**merged, "nullable": True} if nullable else merged
        shared = {k: node[k] for k in ("title", "description") if isinstance(node.get(k), str)}
        if nullable:
            shared["nullable"] = True
        return {"anyOf": [{**shared, **branch} for branch in branches]} if branches else shared

    def _keywords(self, node: dict[str, Any], refs: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if isinstance(node.get("properties"), Mapping):
            props = {str(k): self.clean(v, refs) for k, v in node["properties"].items()}
            if props:
                out["properties"] = props
                names = [n for n in node.get("required") or [] if n in props]
                if names:
                    out["required"] = names
            node.setdefault("type", "object")
        if isinstance(node.get("items"), Mapping):
            # `items: {}` is "anything"; Gemini needs a type, and litellm picks object.
            out["items"] = self.clean(node["items"], refs) or {"type": "object"}
        self._bounds(node, out)
        for key, value in node.items():
            if key in _KEYWORDS and key not in out and key not in _HANDLED:
                out[key] = value
        fmt = out.get("format")
        if fmt is not None and fmt not in _FORMATS.get(str(out.get("type")), ()):
            del out["format"]
        return out

    def _resolve(self, ref: str, refs: tuple[str, ...]) -> dict[str, Any]:
        prefix, _, name = ref.rpartition("/")
        if prefix not in ("#/$defs", "#/definitions") or name not in self._defs:
            raise InvalidRequest(
                f"{self._param}: cannot resolve $ref {ref!r} (only #/$defs/... and "
                "#/definitions/... can be inlined for Gemini)",
                param=self._param,
            )
        if ref in refs:
            return {"type": "object"}
        return self.clean(self._defs[name], (*refs, ref))

    @staticmethod
    def _enum(node: Mapping[str, Any], out: dict[str, Any]) -> bool:
        values = node.get("enum")
        if not isinstance(values, list):
            return False
        strings = [v if isinstance(v, str) else json.dumps(v) for v in values if v is not None]
        strings = [s for s in strings if s]  # Gemini rejects "" as an enum value
        if out.get("type", "string") == "string":
            if strings:
                out["enum"] = strings
                out.setdefault("type", "string")
        elif strings:
            allowed = "one of: " + ", ".join(strings)
            described = node.get("description")
            out["description"] = f"{described} ({allowed})" if described else allowed.capitalize()
        return None in values

    @staticmethod
    def _bounds(node: Mapping[str, Any], out: dict[str, Any]) -> None:
        step = 1 if node.get("type") == "integer" else 0
        for exclusive, inclusive, sign in (
            ("exclusiveMinimum", "minimum", 1),
            ("exclusiveMaximum", "maximum", -1),
        ):
            value = node.get(exclusive)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue  # draft-4's boolean form only qualifies minimum/maximum
            if inclusive not in node:
                out[inclusive] = value + sign * step


# Keywords `clean` has already written (or deliberately left out) itself.
_HANDLED = frozenset({"anyOf", "properties", "required", "items", "enum"})
