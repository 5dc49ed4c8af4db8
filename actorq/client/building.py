"""Building submissions: a task's name, options and arguments checked and encoded
into TaskSpecs with their ids. Part of Session (session.py), without any I/O."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import msgspec

from actorq.client.ids import TaskIds
from actorq.errors import SubmitRejected
from actorq.tasks.options import SUBMIT_OPTIONS
from actorq.tasks.options import build as build_options
from actorq.tasks.registry import lookup
from actorq.wire import protocol as p
from actorq.wire.payload import encode_args


class SpecBuilder:
    """Part of Session: needs `ids` (TaskIds) and `max_payload_bytes`."""

    ids: TaskIds
    max_payload_bytes: int

    def new_id(self) -> str:
        return self.ids.one()

    def _options(self, name: Any, overrides: dict[str, Any]
                 ) -> tuple[str, str, int, p.Options | None]:
        """Check a submission's name and options, starting from its @task defaults.

        `name` may be the @task function itself. Defaults apply when this process has
        the task registered (submitting the function, or having imported its module).
        Raises SubmitRejected("bad_option", ...) naming the option at fault.
        """
        if overrides:
            unknown = overrides.keys() - SUBMIT_OPTIONS
            if unknown:
                raise TypeError(f"unknown task option(s): {', '.join(sorted(unknown))}")
        if name.__class__ is not str:
            name = getattr(name, "actorq_name", name)
        if not isinstance(name, str) or ":" not in name:
            raise SubmitRejected("bad_option",
                                 f"task name {name!r} is not of the form 'module:function'")
        tdef = lookup(name)
        if tdef is None or not tdef.defaults:
            if not overrides:  # the common case: a plain task, nothing to check or build
                return name, "default", 0, None
            merged = overrides
        else:
            merged = {**tdef.defaults, **overrides}
        queue, priority, opts = build_options(merged, time.time())
        return name, queue, priority, opts

    def _payload(self, args: Any, kwargs: dict | None) -> bytes:
        if args is None:
            args = ()
        elif not isinstance(args, (tuple, list)):
            raise TypeError(f"args must be a tuple or list, got {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError(f"kwargs must be a dict, got {type(kwargs).__name__}")
        payload = encode_args(args, kwargs)
        if len(payload) > self.max_payload_bytes:
            raise SubmitRejected("too_large", f"arguments encode to {len(payload)} bytes, over "
                                 f"the broker's {self.max_payload_bytes}-byte limit")
        return payload

    def build(self, name: Any, args: Any, kwargs: dict | None,
              overrides: dict[str, Any]) -> p.TaskSpec:
        """Validate and encode one submission; raises before anything is sent."""
        name, queue, priority, opts = self._options(name, overrides)
        return p.TaskSpec(self.new_id(), name, self._payload(args, kwargs), queue, priority, opts)

    def prepare_many(self, items: Iterable[tuple], overrides: dict[str, Any]) -> list[tuple]:
        """Validate and encode every item: the only step of a batch submission that can
        fail, so a bad item raises before anything is queued. Errors name the item."""
        prepared = []
        resolved: dict[Any, tuple] = {}  # options once per distinct name
        encode = encode_args
        limit = self.max_payload_bytes
        for i, item in enumerate(items):
            # The usual item, (name string, args tuple or list), checked inline: this
            # loop runs before anything is sent, so its cost is never overlapped.
            if item.__class__ is tuple and len(item) == 2:
                fn, args = item
                if (fn.__class__ is str and (args.__class__ is tuple or args.__class__ is list)
                        and fn in resolved):
                    try:
                        payload = encode(args, None)
                    except TypeError as exc:
                        raise TypeError(f"item {i}: {exc}") from None
                    if len(payload) <= limit:
                        prepared.append((resolved[fn], payload))
                        continue
            try:
                if not isinstance(item, tuple) or not 1 <= len(item) <= 3:
                    raise TypeError(f"expected (name, args) or (name, args, kwargs), "
                                    f"got {item!r}")
                fn = item[0]
                opts = resolved.get(fn) if isinstance(fn, str) else None
                if opts is None:
                    opts = self._options(fn, overrides)
                    if isinstance(fn, str):
                        resolved[fn] = opts
                payload = self._payload(item[1] if len(item) > 1 else (),
                                        item[2] if len(item) > 2 else None)
            except TypeError as exc:
                raise TypeError(f"item {i}: {exc}") from None
            except SubmitRejected as exc:
                raise SubmitRejected(exc.code, f"item {i}: {exc.message}") from None
            prepared.append((opts, payload))
        return prepared

    def specs(self, prepared: list[tuple]) -> list[p.TaskSpec]:
        """Task specs (with ids) for prepared items; cannot fail."""
        Spec = p.TaskSpec
        return [Spec(tid, name, payload, queue, priority, opts) for tid, ((name, queue, priority,
                opts), payload) in zip(self.ids.many(len(prepared)), prepared)]

    def build_many(self, items: Iterable[tuple], overrides: dict[str, Any]) -> list[p.TaskSpec]:
        """Validate and encode every item before any is queued; errors name the item."""
        return self.specs(self.prepare_many(items, overrides))

    def build_chain(self, items: Iterable[tuple], overrides: dict[str, Any],
                    piped: bool) -> list[p.TaskSpec]:
        """Specs for a chain (each step depends on, and when `piped` receives the result
        of, the one before) or a group (`piped` False and no links)."""
        specs = self.build_many(items, overrides)
        if not specs:
            raise SubmitRejected("bad_option", "a chain or group needs at least one task")
        if not piped:
            return specs
        out = [specs[0]]
        for spec in specs[1:]:
            prev = out[-1].id
            o = spec.opts or p.Options()
            extra = [d for d in (o.depends_on or []) if d != prev]
            opts = msgspec.structs.replace(o, depends_on=[prev, *extra], pipe=True)
            out.append(msgspec.structs.replace(spec, opts=opts))
        return out
