"""The OpenAPI document, generated from the route table and the pydantic models.

Every HTTP route of the API is an `ApiRoute`: next to its handlers it declares, per method, an
`Operation` (its path, query and body models, its answers and their models, its error
statuses). `build_openapi` walks the application's routes and asks pydantic for the schemas, so
the document cannot drift from what is served: a route that declares nothing fails the build
(unless it opts out with `include_in_schema=False`: static files), and the document has exactly
the served (path, method) pairs. Starlette's `SchemaGenerator` reads YAML out of docstrings,
which would be one more hand-written copy; this reads the models the handlers validate with.

Values the deployment decides (templates, regions) and the device catalogue are marked in the
models (`app.schemas.CHOICES`) and filled in here as enums from the app's settings, so the
document states what this deployment accepts, not just a name pattern.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.devices import DEVICES
from app.schemas import CHOICES, COMPONENT, EXTRA_COMPONENTS, ErrorView
from app.settings import Settings

Endpoint = Callable[[Request], Awaitable[Response]]

_COMPONENTS = "#/components/schemas/"
_ERROR_REASONS = {
    400: "malformed input",
    401: "missing or invalid access token",
    403: "forbidden",
    404: "not found (another user's session is reported as not found)",
    409: "the session has ended",
    413: "body too large",
    415: "not JSON",
    429: "quota or rate limit (Retry-After)",
    503: "no capacity (Retry-After)",
}
_PARAM = re.compile(r"{([^}:]+)(:[^}]+)?}")


@dataclass(frozen=True)
class Answer:
    description: str
    model: type[BaseModel] | None = None  # the JSON body; None for an empty answer (204)


@dataclass(frozen=True)
class Operation:
    """What the document says of one method of a route. 401 is implied unless `public`; 400 by
    any path, query or body model; 413 and 415 by a body (`app.schemas.read_json`)."""

    endpoint: Endpoint
    summary: str
    answers: Mapping[int, Answer]
    errors: tuple[int, ...] = ()
    path: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    public: bool = False

    def error_statuses(self) -> list[int]:
        statuses = set(self.errors)
        if not self.public:
            statuses.add(401)
        if self.path or self.query or self.body:
            statuses.add(400)
        if self.body:
            statuses |= {413, 415}
        return sorted(statuses)


class ApiRoute(Route):
    """One route per path serving each declared method (so a 405 names every allowed method in
    its Allow header), and carrying the declarations the document is built from."""

    def __init__(self, path: str, **operations: Operation) -> None:
        self.operations: dict[str, Operation] = operations
        handlers = {method: op.endpoint for method, op in operations.items()}

        async def endpoint(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await handlers[method](request)

        super().__init__(path, endpoint, methods=list(operations))


def documented_path(route: ApiRoute) -> str:
    """The route's path as the document has it: each parameter named by its path model's alias
    (`{session_id}` → `{sessionId}`), converters dropped."""
    aliases: dict[str, str] = {}
    for op in route.operations.values():
        if op.path is None:
            continue
        for name, field in op.path.model_fields.items():
            aliases[name] = field.alias or name
    params = [m.group(1) for m in _PARAM.finditer(route.path)]
    if set(params) != set(aliases):
        raise TypeError(f"{route.path}: its path model must declare exactly {sorted(params)}")
    return _PARAM.sub(lambda m: "{" + aliases[m.group(1)] + "}", route.path)


def api_operations(routes: Sequence[BaseRoute]) -> Iterator[tuple[str, str, Operation]]:
    """(documented path, method, operation) for every route in the schema. A plain Route left
    in the schema is an error: it would be served and not documented."""
    for route in routes:
        if not isinstance(route, Route) or not route.include_in_schema:
            continue  # WebSocket routes have no OpenAPI operation
        if not isinstance(route, ApiRoute):
            raise TypeError(f"{route.path} is served but declares no operation (use ApiRoute)")
        path = documented_path(route)
        for method, operation in route.operations.items():
            yield path, method.lower(), operation


class _ComponentNames(GenerateJsonSchema):
    # `SessionView` is the `Session` on the wire; the suffix only tells request from answer.
    def normalize_name(self, name: str) -> str:
        return super().normalize_name(name).removesuffix("View")


def build_openapi(routes: Sequence[BaseRoute], settings: Settings) -> dict[str, Any]:
    operations = list(api_operations(routes))
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    wanted[(ErrorView, "serialization")] = None
    for _, _, op in operations:
        if op.body is not None:
            wanted[(op.body, "validation")] = None
        for answer in op.answers.values():
            if answer.model is not None:
                wanted[(answer.model, "serialization")] = None
    refs, defs = models_json_schema(
        list(wanted),
        by_alias=True,
        ref_template=_COMPONENTS + "{model}",
        schema_generator=_ComponentNames,
    )
    choices = {
        "templates": list(settings.templates),
        "regions": list(settings.regions),
        "devices": [device.id for device in DEVICES],
    }
    paths: dict[str, dict[str, Any]] = {}
    for path, method, op in operations:
        paths.setdefault(path, {})[method] = _fill_choices(_operation(op, refs), choices)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Preview orchestrator", "version": "1"},
        "components": {
            "schemas": _fill_choices({**defs.get("$defs", {}), **EXTRA_COMPONENTS}, choices),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "Supabase access JWT",
                }
            },
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _operation(op: Operation, refs: Mapping[tuple[Any, JsonSchemaMode], Any]) -> dict[str, Any]:
    def json_of(schema: Any) -> dict[str, Any]:
        return {"content": {"application/json": {"schema": schema}}}

    error = json_of(refs[(ErrorView, "serialization")])
    responses: dict[str, Any] = {}
    for status, answer in sorted(op.answers.items()):
        model = {} if answer.model is None else json_of(refs[(answer.model, "serialization")])
        responses[str(status)] = {"description": answer.description, **model}
    for status in op.error_statuses():
        responses.setdefault(str(status), {"description": _ERROR_REASONS[status], **error})
    document: dict[str, Any] = {"summary": op.summary}
    parameters = [*_parameters(op.path, "path"), *_parameters(op.query, "query")]
    if parameters:
        document["parameters"] = parameters
    if op.body is not None:
        document["requestBody"] = {"required": True, **json_of(refs[(op.body, "validation")])}
    document["responses"] = responses
    if op.public:
        document["security"] = []
    return document


def _parameters(model: type[BaseModel] | None, where: str) -> list[dict[str, Any]]:
    if model is None:
        return []
    schema = model.model_json_schema(by_alias=True)
    if "$defs" in schema:
        raise TypeError(f"{model.__name__}: a parameter model holds plain values only")
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "in": where,
            "required": name in required,
            "schema": _without_null(prop),
        }
        for name, prop in schema["properties"].items()
    ]


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter left out is the model's None: the text `null` is not a value of it."""
    options = schema.get("anyOf")
    if options is None:
        return schema
    kept = [o for o in options if o != {"type": "null"}]
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**rest, **kept[0]} if len(kept) == 1 else {**rest, "anyOf": kept}


def _fill_choices(node: Any, choices: Mapping[str, list[str]]) -> Any:
    """`node` with each name marked CHOICES turned into an enum of the allowed values, and
    each COMPONENT mark into a reference to that component."""
    if isinstance(node, list):
        return [_fill_choices(item, choices) for item in node]
    if not isinstance(node, dict):
        return node
    if CHOICES in node:
        kept = {k: v for k, v in node.items() if k not in (CHOICES, "pattern")}
        return {**kept, "enum": choices[node[CHOICES]]}
    if COMPONENT in node:
        return {"$ref": _COMPONENTS + node[COMPONENT]}
    return {key: _fill_choices(value, choices) for key, value in node.items()}
