"""Messages that are well shaped and wrong: every field of the wire's Structs filled
from values an honest peer would rarely send (ids that exist and do not, empty and
huge strings, negative, huge and non-finite numbers, payloads that are not msgpack,
deep nesting cut short). Built from the Structs' own type information, so a field
added to the protocol is fuzzed without a change here."""

from __future__ import annotations

import math
import random
from typing import Any

import msgspec
from msgspec import inspect as mi

IDS = ["t0", "t1", "t2", "t3", "nope", "", "x" * 300]
NAMES = ["m:f", "tests.apps.faulty:add", "nocolon", "", ":", "m:" + "f" * 250, "\x00:\x00"]
WORDS = ["default", "q", "", "w1", "w2", "sup", "scheduler", "workers", "pools", "queues",
         "pause", "resume", "purge", "0 3 * * *", "* * * * * *", "61 * * * *", "a" * 1000]
INTS = [0, 1, -1, 2, 3, 255, 256, 1000, 2**31, 2**63 - 1, -(2**63)]
FLOATS = [0.0, -1.0, 0.5, 1e-9, 1e12, 1e308, math.inf, -math.inf, math.nan]
PAYLOADS = [b"", b"\x90", b"\x92\x90\x80", b"\xc1", b"\xff" * 5, b"\x92\x91\x01\x80"]


class Fuzzer:
    def __init__(self, seed: int) -> None:
        self.rand = random.Random(seed)
        self._info: dict[Any, mi.Type] = {}

    def message(self, union: Any) -> Any:
        info = self._info.get(union)
        if info is None:
            info = self._info[union] = mi.type_info(union)
        return self.value(info, 0)

    def value(self, t: mi.Type, depth: int) -> Any:
        r = self.rand
        if isinstance(t, mi.UnionType):
            return self.value(r.choice(t.types), depth)
        if isinstance(t, mi.StructType):
            kwargs = {}
            for f in t.fields:
                if f.required or r.random() < 0.6:
                    kwargs[f.name] = self.value(f.type, depth + 1)
            return t.cls(**kwargs)
        if isinstance(t, mi.StrType):
            pool = r.choice((IDS, NAMES, WORDS))
            return r.choice(pool) if r.random() < 0.9 else self.text()
        if isinstance(t, (mi.BytesType, mi.ByteArrayType)):
            return r.choice(PAYLOADS) if r.random() < 0.8 else r.randbytes(r.randrange(64))
        if isinstance(t, mi.BoolType):
            return r.random() < 0.5
        if isinstance(t, mi.IntType):
            return r.choice(INTS) if r.random() < 0.7 else r.randrange(-10, 10_000)
        if isinstance(t, mi.FloatType):
            return r.choice(FLOATS) if r.random() < 0.7 else r.uniform(-10, 1e6)
        if isinstance(t, mi.NoneType):
            return None
        if isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
            n = 0 if depth > 4 else r.choice((0, 1, 1, 2, 3, 8))
            return [self.value(t.item_type, depth + 1) for _ in range(n)]
        if isinstance(t, mi.DictType):
            n = 0 if depth > 4 else r.choice((0, 1, 2))
            return {self.value(t.key_type, depth + 1): self.value(t.value_type, depth + 1)
                    for _ in range(n)}
        if isinstance(t, mi.AnyType):
            return r.choice([None, 1, "x", [1, 2], {"a": 1}])
        if isinstance(t, mi.EnumType):
            return r.choice(list(t.cls))
        if isinstance(t, mi.LiteralType):
            return r.choice(t.values)
        raise TypeError(f"no fuzzing for {t!r}")

    def text(self) -> str:
        r = self.rand
        return "".join(chr(r.randrange(0x20, 0x2FFF)) for _ in range(r.randrange(12)))

    def frame(self, union: Any) -> bytes:
        """A frame as a peer might send it: a wrong message encoded, or one cut short,
        or bytes flipped, or noise."""
        r = self.rand
        data = msgspec.msgpack.encode(self.message(union))
        roll = r.random()
        if roll < 0.5:
            return data
        if roll < 0.7:
            return data[:r.randrange(len(data) + 1)]
        if roll < 0.9:
            buf = bytearray(data)
            for _ in range(r.randrange(1, 4)):
                buf[r.randrange(len(buf))] = r.randrange(256)
            return bytes(buf)
        return r.randbytes(r.randrange(1, 200))
