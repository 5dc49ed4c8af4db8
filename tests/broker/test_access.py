"""Task owners and client roles (broker/state/access.py): squatting, theft, roles."""

from actorq.wire import protocol as p

from .fakes import C, C2, fresh, turn


def submit(s, peer, tid, key=None):
    opts = p.Options(key=key) if key else None
    s.on_client(peer, p.Submit([p.TaskSpec(tid, "m:f", b"", "q", 0, opts)]), 0.0)
    return turn(s)


def test_an_id_another_client_holds_is_refused_not_adopted():
    s = fresh()
    submit(s, C2, "t-1")
    out = submit(s, C, "t-1")
    assert [r.code for r in out.rejected[C]] == ["id_taken"]
    assert s.tasks["t-1"].watchers == C2  # the squatter does not hear its outcome
    # The owner's own resubmission (a retry) is still a no-op that answers as before.
    assert submit(s, C2, "t-1").accepted[C2] == ["t-1"]


def test_idempotency_keys_are_scoped_to_the_client_key_that_used_them():
    s = fresh()
    s.bind_principal(C, b"alice", admin=False)
    s.bind_principal(C2, b"mallory", admin=False)
    submit(s, C2, "squat", key="order-42")
    out = submit(s, C, "real", key="order-42")
    assert out.accepted[C] == ["real"] and not out.aliases
    assert s.tasks["real"].owner == b"alice"
    # Alice's own resubmission under the key finds her task, from any of her routes.
    s.bind_principal(b"alice-2", b"alice", admin=False)
    out = submit(s, b"alice-2", "again", key="order-42")
    assert out.aliases[b"alice-2"] == {"again": "real"}


def test_without_curve_idempotency_keys_are_scoped_to_the_connection():
    s = fresh()
    submit(s, C2, "squat", key="order-42")
    out = submit(s, C, "real", key="order-42")
    assert out.accepted[C] == ["real"] and not out.aliases
    assert submit(s, C, "again", key="order-42").aliases[C] == {"again": "real"}


def test_a_submit_key_sees_and_cancels_only_its_own_tasks():
    s = fresh()
    s.bind_principal(C, b"alice", admin=False)
    s.bind_principal(C2, b"mallory", admin=False)
    submit(s, C, "mine")
    s.on_client(C2, p.Cancel(req=1, ids=["mine"]), 0.0)
    s.on_client(C2, p.Query(req=2, ids=["mine"]), 0.0)
    s.on_client(C2, p.Watch(ids=["mine"]), 0.0)
    out = turn(s)
    replies = {type(m).__name__: m for _, m in out.to_clients}
    assert replies["CancelReply"].cancelled == [False]
    assert replies["Infos"].items == [None]
    assert out.outcomes[C2][0].state == "unknown"
    assert s.tasks["mine"].state == "queued"
    s.on_client(C, p.Cancel(req=3, ids=["mine"]), 0.0)
    assert turn(s).to_clients[0][1].cancelled == [True]


def test_operator_commands_need_an_admin_key():
    s = fresh()
    s.bind_principal(C, b"alice", admin=False)
    s.bind_principal(C2, b"ops", admin=True)
    submit(s, C, "mine")
    for msg in (p.DeadLetters(req=1), p.ListTasks(req=2), p.Inspect(req=3, what="workers"),
                p.QueueCommand(req=4, queue="q", action="pause"), p.Scale(req=5, pool="x"),
                p.GetStats(req=7)):
        s.on_client(C, msg, 0.0)
        (peer, reply), = turn(s).to_clients
        assert (peer, reply.code, reply.req) == (C, "forbidden", msg.req), msg
    assert "q" not in s.paused
    s.on_client(C2, p.Cancel(req=6, ids=["mine"]), 0.0)  # an admin acts on every task
    assert turn(s).to_clients[0][1].cancelled == [True]
