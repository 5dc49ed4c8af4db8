"""The payload codec: task arguments and results as msgpack bytes.

The broker never decodes a payload (it is opaque bytes to it); clients encode
arguments and decode results, workers the other way round. msgpack, never pickle:
a payload can carry data, not code.
"""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def encode_args(args: tuple | list, kwargs: dict | None) -> bytes:
    """Encode call arguments; raises TypeError for anything msgpack cannot carry."""
    try:
        return _encoder.encode((args, kwargs or {}))
    except TypeError as exc:
        raise TypeError(f"task arguments cannot be encoded: {exc}") from None


def decode_args(payload: bytes) -> tuple[list, dict]:
    args, kwargs = _decoder.decode(payload)
    return args, kwargs


def encode_result(value: Any) -> bytes:
    return _encoder.encode(value)


def decode_result(data: bytes | None) -> Any:
    return None if data is None else _decoder.decode(data)
