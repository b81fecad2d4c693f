"""The WebSocket channels' JSON: each public stream message as SPEC's object, plus its `type`.

The `type` is the name of the response's one set field (`book`, `trade`, `quote`, `order`,
`fill`, `event`), and the rest is protobuf's canonical JSON mapping of that field, the same one
Envoy's transcoder gives REST: lowerCamelCase names, every field present even when zero (a
timestamp is left out only when it was never set), prices as numbers, enums by name,
timestamps as RFC 3339 UTC strings.
"""

from __future__ import annotations

import json
from collections import OrderedDict

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from websockets.frames import Frame, Opcode

ENCODED_CACHE_SIZE = 4096
"""Recent messages kept encoded; more only costs encoding again, never a wrong answer."""


def to_json(response: Message) -> str:
    """`{"type": <field name>, ...that field's message}` for a stream response.

    The message's own `type` (an order's LIMIT or MARKET) would hide the message type, so it is
    renamed after the field: `orderType`.
    """
    ((payload, message),) = response.ListFields()
    values = _public_dict(message)
    body: dict[str, object] = {"type": payload.name}
    for field in message.DESCRIPTOR.fields:  # in the proto's order
        if field.json_name in values:
            name = f"{payload.name}Type" if field.json_name == "type" else field.json_name
            body[name] = values[field.json_name]
    return _dumps(body)


def error_json(text: str) -> str:
    return _dumps({"type": "error", "message": text})


def _public_dict(message: Message) -> dict[str, object]:
    return MessageToDict(
        message, preserving_proto_field_name=False, always_print_fields_with_no_presence=True
    )


def _dumps(body: dict[str, object]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


class JsonEncoder:
    """Encodes each message once however many sockets it goes to: its JSON, and its WebSocket
    text frame (a server's frames are not masked and compression is off, so the frame's bytes
    are the same on every connection).

    The hub hands the same message object to every subscriber, so entries are keyed by identity;
    an entry holds its message, so the identity cannot be reused while the entry lives.
    """

    def __init__(self, size: int = ENCODED_CACHE_SIZE) -> None:
        self._size = size
        self._encoded: OrderedDict[int, tuple[Message, str, bytes]] = OrderedDict()

    def encode(self, response: Message) -> str:
        return self._entry(response)[1]

    def frame(self, response: Message) -> bytes:
        """The whole WebSocket text frame (header and payload) carrying the message's JSON."""
        return self._entry(response)[2]

    def _entry(self, response: Message) -> tuple[Message, str, bytes]:
        key = id(response)
        cached = self._encoded.get(key)
        if cached is not None:
            self._encoded.move_to_end(key)
            return cached
        text = to_json(response)
        frame = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
        entry = self._encoded[key] = (response, text, frame)
        if len(self._encoded) > self._size:
            self._encoded.popitem(last=False)
        return entry
