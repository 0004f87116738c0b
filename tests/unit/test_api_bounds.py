"""Every number the REST API takes is bounded in its OpenAPI document: each integer and
number among the parameters and request bodies has a minimum and a maximum, so a value such
as ``offset=6683262415715635662067597312`` is refused (422) before any endpoint, encoder or
database driver sees it."""

from __future__ import annotations

from fastapi import FastAPI

from dbsafe.api.app import API_PREFIX, api_router


def _spec() -> dict:
    app = FastAPI()
    app.include_router(api_router(), prefix=API_PREFIX)
    return app.openapi()


def _numbers(schema: dict, components: dict, where: str, seen: set[str]):
    """(where, schema) of every integer or number schema reachable from ``schema``."""
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[1]
        if name not in seen:
            seen.add(name)
            yield from _numbers(components[name], components, f"{where}->{name}", seen)
        return
    if schema.get("type") in ("integer", "number"):
        yield where, schema
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for i, sub in enumerate(schema.get(key, [])):
            yield from _numbers(sub, components, f"{where}.{key}[{i}]", seen)
    for name, sub in schema.get("properties", {}).items():
        yield from _numbers(sub, components, f"{where}.{name}", seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _numbers(schema[key], components, f"{where}.{key}", seen)


def _bounded(schema: dict) -> bool:
    """Both bounds, or a list of the values allowed."""
    return bool("enum" in schema or "const" in schema
                or ({"minimum", "exclusiveMinimum"} & schema.keys()
                    and {"maximum", "exclusiveMaximum"} & schema.keys()))


def _inputs(spec: dict):
    components = spec.get("components", {}).get("schemas", {})
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            name = f"{method.upper()} {path}"
            for param in op.get("parameters", []):
                yield from _numbers(param["schema"], components,
                                    f"{name} {param['in']}:{param['name']}", set())
            for media in op.get("requestBody", {}).get("content", {}).values():
                yield from _numbers(media["schema"], components, f"{name} body", set())


def test_every_number_the_api_takes_has_both_bounds():
    found = list(_inputs(_spec()))
    assert len(found) >= 40  # the walk reaches query, path and body numbers
    unbounded = [where for where, s in found if not _bounded(s)]
    assert not unbounded, "numbers without both bounds:\n" + "\n".join(unbounded)


def test_the_walk_sees_a_number_without_bounds():
    """The check itself: a parameter without bounds is reported."""
    spec = {"paths": {"/x": {"get": {"parameters": [
        {"in": "query", "name": "n", "schema": {"type": "integer", "minimum": 0}}]}}}}
    assert [w for w, s in _inputs(spec) if not _bounded(s)] == ["GET /x query:n"]
