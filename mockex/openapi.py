"""The REST API as an OpenAPI 3 document, generated from the proto descriptor set.

Paths, verbs and bodies come from the `google.api.http` annotations, field names and types from
the messages as Envoy's transcoder prints them (lowerCamelCase JSON names, enums as names,
Timestamps as RFC 3339 strings), so the document can never drift from what the edge serves.

    python -m mockex.openapi build/proto/exchange.pb build/openapi.json
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from mockex.access import Access, access_of

FieldProto = descriptor_pb2.FieldDescriptorProto

PUBLIC_SERVICES = (
    "OrderService",
    "BookService",
    "TradeService",
    "AccountService",
    "HealthService",
    "AdminService",
    "CompetitionService",
)
ERROR_STATUSES = {
    "400": "INVALID_ARGUMENT or FAILED_PRECONDITION",
    "401": "UNAUTHENTICATED: missing or unknown X-API-Key",
    "403": "PERMISSION_DENIED: another user's userId, or an admin call without the role",
    "404": "NOT_FOUND",
    "429": "RESOURCE_EXHAUSTED: rate limit; see Retry-After",
    "503": "UNAVAILABLE",
    "504": "DEADLINE_EXCEEDED: the engine did not answer in time; the message names the orderId",
}
SCALARS: dict[int, dict[str, Any]] = {
    FieldProto.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldProto.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldProto.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldProto.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldProto.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldProto.TYPE_UINT32: {
        "type": "integer",
        "format": "int64",
        "minimum": 0,
        "maximum": 4294967295,
    },
    FieldProto.TYPE_FIXED32: {
        "type": "integer",
        "format": "int64",
        "minimum": 0,
        "maximum": 4294967295,
    },
    FieldProto.TYPE_INT64: {"type": "integer", "format": "int64"},
    FieldProto.TYPE_SINT64: {"type": "integer", "format": "int64"},
    FieldProto.TYPE_SFIXED64: {"type": "integer", "format": "int64"},
    FieldProto.TYPE_UINT64: {"type": "integer", "format": "int64", "minimum": 0},
    FieldProto.TYPE_FIXED64: {"type": "integer", "format": "int64", "minimum": 0},
    FieldProto.TYPE_BOOL: {"type": "boolean"},
    FieldProto.TYPE_STRING: {"type": "string"},
    FieldProto.TYPE_BYTES: {"type": "string", "format": "byte"},
}
WELL_KNOWN = {".google.protobuf.Timestamp": {"type": "string", "format": "date-time"}}


class _Descriptors:
    def __init__(self, descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.services: list[descriptor_pb2.ServiceDescriptorProto] = []
        for file in descriptor_set.file:
            prefix = f".{file.package}" if file.package else ""
            for message in file.message_type:
                self._add_message(prefix, message)
            for enum in file.enum_type:
                self.enums[f"{prefix}.{enum.name}"] = enum
            if file.package == "exchange.v1":
                self.services.extend(s for s in file.service if s.name in PUBLIC_SERVICES)

    def _add_message(self, prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        full_name = f"{prefix}.{message.name}"
        self.messages[full_name] = message
        for nested in message.nested_type:
            self._add_message(full_name, nested)
        for enum in message.enum_type:
            self.enums[f"{full_name}.{enum.name}"] = enum


class OpenApiBuilder:
    def __init__(self, descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
        self.descriptors = _Descriptors(descriptor_set)
        self.schemas: dict[str, Any] = {}

    def document(self) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        for service in self.descriptors.services:
            for method in service.method:
                if not method.options.HasExtension(annotations_pb2.http):
                    continue
                rule = method.options.Extensions[annotations_pb2.http]
                verb = rule.WhichOneof("pattern")
                template = getattr(rule, verb)
                path, operation = self._operation(service.name, method, rule, template)
                paths.setdefault(path, {})[verb] = operation
        self.schemas["Error"] = {
            "type": "object",
            "description": "Every error: the gRPC status code and a message naming the field.",
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object"}},
            },
            "required": ["code", "message"],
        }
        return {
            "openapi": "3.0.3",
            "info": {
                "title": "Mockex REST API",
                "version": "v1",
                "description": "Generated from proto/exchange/v1 (google.api.http annotations). "
                "Prices are JSON numbers, quantities JSON integers, timestamps RFC 3339 (UTC).",
            },
            "components": {
                "securitySchemes": {
                    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
                },
                "schemas": dict(sorted(self.schemas.items())),
            },
            "security": [{"apiKey": []}],
            "paths": dict(sorted(paths.items())),
        }

    def _operation(
        self, service: str, method: descriptor_pb2.MethodDescriptorProto, rule: Any, template: str
    ) -> tuple[str, dict[str, Any]]:
        request = self.descriptors.messages[method.input_type]
        response_type = method.output_type
        path_fields = re.findall(r"{([a-z_][a-z0-9_]*)}", template)
        by_name = {field.name: field for field in request.field}
        parameters = []
        for name in path_fields:
            field = by_name[name]
            parameters.append(
                {
                    "name": field.json_name,
                    "in": "path",
                    "required": True,
                    "schema": self._field_schema(field),
                }
            )
        path = re.sub(
            r"{([a-z_][a-z0-9_]*)}",
            lambda match: "{" + by_name[match.group(1)].json_name + "}",
            template,
        )
        access = access_of(service, method.name)
        if access is None:
            raise ValueError(f"{service}.{method.name} has a REST route but no access rule")
        operation: dict[str, Any] = {
            "operationId": f"{service}.{method.name}",
            "tags": [service],
        }
        if rule.body == "*":
            body_fields = [field for field in request.field if field.name not in path_fields]
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": self._object(body_fields)}},
            }
        elif not rule.body:
            for field in request.field:
                if field.name in path_fields or field.type == FieldProto.TYPE_MESSAGE:
                    continue
                parameters.append(
                    {
                        "name": field.json_name,
                        "in": "query",
                        "required": False,
                        "schema": self._field_schema(field),
                    }
                )
        if parameters:
            operation["parameters"] = parameters
        if rule.response_body:
            response_field = next(
                f
                for f in self.descriptors.messages[response_type].field
                if f.name == rule.response_body
            )
            response_schema = self._ref(response_field.type_name)
        else:
            response_schema = self._ref(response_type)
        operation["responses"] = {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": response_schema}},
            },
            **{
                status: {
                    "description": description,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
                for status, description in ERROR_STATUSES.items()
                if status not in ("401", "403") or access is not Access.PUBLIC
            },
        }
        if access is Access.PUBLIC:
            operation["security"] = []
        elif access is Access.ADMIN:
            operation["description"] = "Needs an admin API key."
        return path, operation

    def _object(self, fields: list[FieldProto]) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {field.json_name: self._field_schema(field) for field in fields},
        }

    def _ref(self, type_name: str) -> dict[str, Any]:
        if type_name in WELL_KNOWN:
            return dict(WELL_KNOWN[type_name])
        short = type_name.rsplit(".", 1)[-1]
        if short not in self.schemas:
            self.schemas[short] = {}  # reserve first: messages may refer to themselves
            message = self.descriptors.messages[type_name]
            self.schemas[short] = self._object(list(message.field))
        return {"$ref": f"#/components/schemas/{short}"}

    def _field_schema(self, field: FieldProto) -> dict[str, Any]:
        if field.type == FieldProto.TYPE_MESSAGE:
            message = self.descriptors.messages.get(field.type_name)
            if message is not None and message.options.map_entry:
                value = next(f for f in message.field if f.name == "value")
                return {"type": "object", "additionalProperties": self._field_schema(value)}
            item = self._ref(field.type_name)
        elif field.type == FieldProto.TYPE_ENUM:
            enum = self.descriptors.enums[field.type_name]
            item = {"type": "string", "enum": [value.name for value in enum.value]}
        else:
            item = dict(SCALARS[field.type])
        if field.label == FieldProto.LABEL_REPEATED:
            return {"type": "array", "items": item}
        return item


def build(descriptor_set_path: Path) -> dict[str, Any]:
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set_path.read_bytes())
    return OpenApiBuilder(descriptor_set).document()


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: python -m mockex.openapi DESCRIPTOR_SET OUT.json")
    document = build(Path(sys.argv[1]))
    Path(sys.argv[2]).write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
