"""OpenAPI 3.1 document built from the declared endpoints and their pydantic models.

Every operation lists the client errors it can answer: 413 for any request (the body limit
holds before routing), 401/403 by its kind of authentication, 404 for the objects named in
its path, 422 for its query parameters, and 400/408/415/422 for its JSON body."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.routing import Endpoint

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "examples": ["validation_failed"]},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_AUTH_RESPONSES = {
    "tenant": {
        401: "Missing or unknown API key",
        403: "The operator key was sent, or insufficient_scope: the key lacks the scope "
        "named in details.scope",
    },
    "admin": {401: "Missing or unknown API key", 403: "A tenant key was sent"},
    "signature": {403: "Missing or invalid provider signature"},
    "none": {},
}
_ANY_REQUEST = {413: "The request body exceeds MAX_BODY_BYTES"}
_JSON_BODY = {
    400: "Malformed JSON (or nested too deep, or a number out of range)",
    408: "The body did not arrive within BODY_READ_TIMEOUT_SECONDS",
    415: "Content-Type is not application/json",
    422: "Invalid fields, each named in details.fields",
}
_FORM_BODY = {408: "The body did not arrive within BODY_READ_TIMEOUT_SECONDS"}


def _client_errors(ep: Endpoint, path_params: list[str]) -> dict[int, str]:
    errors: dict[int, str] = {**_ANY_REQUEST, **_AUTH_RESPONSES[ep.auth]}
    if path_params and ep.auth in ("tenant", "admin"):
        errors[404] = "No such " + " or ".join(name.removesuffix("_id") for name in path_params)
    if ep.query is not None:
        errors[422] = "Invalid query parameters, each named in details.fields"
    if ep.body is not None or ep.body_schema is not None:
        errors.update(_JSON_BODY)
    elif ep.form:
        errors.update(_FORM_BODY)
    return {**errors, **ep.responses}


def _models(endpoints: list[Endpoint]) -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {}
    for ep in endpoints:
        candidates: list[type[BaseModel]] = []
        if isinstance(ep.body, tuple):
            candidates.extend(ep.body)
        elif ep.body is not None:
            candidates.append(ep.body)
        if ep.body_schema is not None:
            candidates.append(ep.body_schema)
        if ep.query is not None:
            candidates.append(ep.query)
        for model in candidates:
            seen.setdefault(model.__name__, model)
    return list(seen.values())


def build_openapi(endpoints: list[Endpoint], title: str, version: str) -> dict[str, Any]:
    models = _models(endpoints)
    refs, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Error"] = _ERROR
    ref_of = {m: refs[(m, "validation")] for m in models}

    paths: dict[str, Any] = {}
    for ep in endpoints:
        op: dict[str, Any] = {
            "operationId": ep.handler.__name__,
            "summary": ep.summary,
            "tags": list(ep.tags),
            "responses": {},
        }
        if ep.description:
            op["description"] = ep.description
        path_params = re.findall(r"{(\w+)}", ep.path)
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in path_params
        ]
        if ep.query is not None:
            query_schema = schemas.get(ep.query.__name__, {})
            required = set(query_schema.get("required", []))
            for name, prop in query_schema.get("properties", {}).items():
                params.append(
                    {"name": name, "in": "query", "required": name in required, "schema": prop}
                )
        if params:
            op["parameters"] = params
        if isinstance(ep.body, tuple):
            schema: dict[str, Any] = {"oneOf": [ref_of[m] for m in ep.body]}
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema}},
            }
        elif ep.body is not None or ep.body_schema is not None:
            model = ep.body if ep.body is not None else ep.body_schema
            assert model is not None
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref_of[model]}},
            }
        elif ep.form:
            op["requestBody"] = {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
            }
        op["responses"][str(ep.status)] = {"description": "Success"}
        error = {
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        }
        for status, text in sorted(_client_errors(ep, path_params).items()):
            op["responses"][str(status)] = {"description": text, **error}
        if ep.auth == "tenant":
            # OpenAPI 3.1 lets a non-OAuth requirement list roles: the key scope needed
            op["security"] = [{"bearer": [ep.required_scope]}]
        elif ep.auth == "admin":
            op["security"] = [{"bearer": []}]
        paths.setdefault(ep.path, {})[ep.method.lower()] = op

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
