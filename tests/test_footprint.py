"""The broker's memory per queued task and per process, guarded against regressions.

The backlog target (1,000,000 queued tasks in 300 MB of broker RSS, issue 3) is met
with 40-60 MB to spare, and with ~15 MB for tasks whose arguments all differ; each
of these is worth more than that at a million tasks.
"""

import subprocess
import sys

import actorq
from actorq.broker.state import BrokerState
from actorq.client.session import Session
from actorq.wire import protocol as p


def test_a_queued_task_record_fits_a_112_byte_block():
    # 96 bytes until tasks had owners (issue 23: an id or key another client holds is
    # refused, a submit-only key sees only its own tasks); the owner is one pointer.
    s = BrokerState(now=0.0, instance="x")
    s.on_client(b"c", p.Submit([p.TaskSpec("t0", "m:f", b"\x92\x90\x80")]), 0.0)
    task = s.tasks["t0"]
    assert task.run is None  # nothing of a run is allocated before there is one
    assert sys.getsizeof(task) <= 112


def test_queued_tasks_with_the_same_small_arguments_share_one_payload():
    s = BrokerState(now=0.0, instance="x")
    small, large = b"\x92\x91\x01\x80", b"\x92\x91\xc4\x20" + b"x" * 32

    def copy(data: bytes) -> bytes:  # a distinct object, as each decoded spec has
        return bytes(bytearray(data))

    s.on_client(b"c", p.Submit([p.TaskSpec(f"s{i}", "m:f", copy(small)) for i in range(3)]
                               + [p.TaskSpec(f"l{i}", "m:f", copy(large)) for i in range(2)]),
                0.0)
    first = s.tasks["s0"].payload
    assert first == small and all(s.tasks[f"s{i}"].payload is first for i in range(3))
    assert s.tasks["l0"].payload == s.tasks["l1"].payload == large
    assert s.tasks["l0"].payload is not s.tasks["l1"].payload  # not worth a lookup
    # Distinct small arguments do not grow the shared set without bound
    for start in range(0, 30_000, 1_000):
        s.on_client(b"c", p.Submit([p.TaskSpec(f"d{i}", "m:f", i.to_bytes(4, "big"))
                                    for i in range(start, start + 1_000)]), 0.0)
    assert len(s._payloads) <= 11_000
    assert s.tasks["d29999"].payload == (29999).to_bytes(4, "big")


def test_ids_fit_an_80_byte_string_and_sort_by_creation():
    sess = Session("tcp://127.0.0.1:1")
    ids = [sess.new_id() for _ in range(3)] + [sp.id for sp in sess.build_many(
        [("m:f", ())] * 3, {})]
    assert all(len(i) <= 31 and sys.getsizeof(i) <= 80 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_the_broker_process_loads_no_client_or_unused_library():
    code = ("import sys, actorq.broker.loop, actorq.cli; "
            "print(' '.join(m for m in ('actorq.client', 'actorq.client.sync', 'actorq.client.aio', 'asyncio', "
            "'croniter', '_hashlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_the_lazy_package_exports_exactly_its_public_names():
    assert set(actorq.__all__) == set(actorq._WHERE) | {"__version__"}
    for name in actorq.__all__:
        assert getattr(actorq, name) is not None
