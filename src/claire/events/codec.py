"""Wire format: JSON via msgspec. Decoding validates types and values and names the field."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from claire.events.types import AnyEvent

T = TypeVar("T")


class DecodeError(ValueError):
    """A payload that is not a valid event; the message names the field at fault."""


_encoder = msgspec.json.Encoder(decimal_format="string")
_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)
_decoders: dict[type, msgspec.json.Decoder[Any]] = {}


def encode(event: Any) -> bytes:
    """JSON bytes of an event (Decimals as strings, so nothing is lost on the wire)."""
    return _encoder.encode(event)


_STATUS = re.compile(rb'"status"\s*:\s*"([^"]*)"')


def _normalise(payload: bytes | str) -> bytes | str:
    """Order statuses are accepted in any letter case (seed 004); msgspec matches enum values
    exactly, so a status that is not lower case already is lowered before validation."""
    raw = payload.encode() if isinstance(payload, str) else payload
    if b'"order_result"' not in raw:  # the only event with a status (and no free-form metadata)
        return payload
    m = _STATUS.search(raw)
    if m is None:
        return payload
    value = m.group(1)
    norm = value.strip().lower()
    if norm == value:
        return payload
    return raw[: m.start(1)] + norm + raw[m.end(1) :]


def decode(payload: bytes | str) -> AnyEvent:
    """Decode any event by its ``type`` tag. Raises DecodeError naming the bad field."""
    try:
        ev: AnyEvent = _decoder.decode(_normalise(payload))
        return ev
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise DecodeError(str(exc)) from exc


def decode_as(payload: bytes | str, type_: type[T]) -> T:
    """Decode a payload as ``type_`` (one decoder per type, made once). Raises DecodeError."""
    dec = _decoders.get(type_)
    if dec is None:
        dec = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        out: T = dec.decode(_normalise(payload))
        return out
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise DecodeError(str(exc)) from exc


def to_builtins(event: Any) -> Any:
    """Plain dicts/lists/str (Decimals as strings), e.g. for JSON columns and CSV."""
    return msgspec.to_builtins(event)
