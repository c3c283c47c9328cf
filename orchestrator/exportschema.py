"""The JSON Schemas of `fleet export`'s records (orchestrator/schemas/), and a check against them.

`jsonschema` is used when it is installed; otherwise a small checker of the keywords these schemas use (type,
enum, required, properties, additionalProperties false, items, minItems, maxItems, minimum, $ref to $defs).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

FORMATS = ("trajectories", "sft", "preference")
TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def schema(name: str) -> dict[str, Any]:
    text = resources.files("orchestrator").joinpath("schemas", f"{name}.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def problems(record: Any, name: str) -> list[str]:
    """What is wrong with record against the format's schema ([] when it validates)."""
    root = schema(name)
    try:
        import jsonschema
    except ImportError:
        return list(_check(record, root, root, "$"))
    validator = jsonschema.Draft202012Validator(root)
    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in validator.iter_errors(record)]


def _check(value: Any, node: dict[str, Any], root: dict[str, Any], where: str) -> list[str]:
    if "$ref" in node:
        return _check(value, root["$defs"][node["$ref"].rsplit("/", 1)[-1]], root, where)
    kind = node.get("type")
    if kind and (not isinstance(value, TYPES[kind]) or (kind in ("integer", "number") and isinstance(value, bool))):
        return [f"{where}: must be {kind}"]
    found = [f"{where}: must be one of {node['enum']}"] if "enum" in node and value not in node["enum"] else []
    if "minimum" in node and isinstance(value, int | float) and value < node["minimum"]:
        found.append(f"{where}: must be at least {node['minimum']}")
    if isinstance(value, dict):
        found += _check_object(value, node, root, where)
    if isinstance(value, list):
        if len(value) < node.get("minItems", 0) or len(value) > node.get("maxItems", len(value)):
            found.append(f"{where}: has {len(value)} items")
        for i, item in enumerate(value):
            found += _check(item, node.get("items", {}), root, f"{where}[{i}]")
    return found


def _check_object(value: dict[str, Any], node: dict[str, Any], root: dict[str, Any], where: str) -> list[str]:
    props = node.get("properties", {})
    found = [f"{where}.{key}: is required" for key in node.get("required", []) if key not in value]
    if node.get("additionalProperties") is False:
        found += [f"{where}.{key}: unknown field" for key in value if key not in props]
    for key, sub in props.items():
        if key in value:
            found += _check(value[key], sub, root, f"{where}.{key}")
    return found
