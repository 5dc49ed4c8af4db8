"""Per-task CPU of the broker's pure state and wire codec, without sockets or processes.

The harness's end-to-end figures swing by 20% on a shared 2-core machine; this
measures the code alone, for before/after checks of the hot path:

    .venv/bin/python benchmarks/micro_state.py .            # this checkout
    .venv/bin/python benchmarks/micro_state.py /tmp/old     # a worktree of another commit
"""
import sys, time
sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else ".")
try:
    from actorq.wire import protocol as p
    from actorq.broker.state import BrokerState
except ImportError:  # a checkout from before the packages of issue 19
    from actorq import protocol as p
    from actorq.state import BrokerState
N=20000
def t(f, reps=9):
    r=[]
    for _ in range(reps):
        t0=time.perf_counter(); f(); r.append(time.perf_counter()-t0)
    return sorted(r)[reps//2]/N*1e6
leases=[p.Lease(f"t{i:08d}","m:f",b"\x92\x90\x80",i,1) for i in range(N)]
d=p.Dispatch(leases); raw=p.encode(d)
res=p.Report([p.Result(l.id,l.token,True,b"\xc0",None,None,0.0) for l in leases]); rraw=p.encode(res)
dw=p.decoder(p.WorkerToBroker); spraw=p.encode(p.Submit([p.TaskSpec(f"t{i:08d}","m:f",b"\x92\x90\x80") for i in range(N)])); dc=p.decoder(p.ClientToBroker)
where = sys.argv[1] if len(sys.argv) > 1 else "."
print(where, "us/task: enc dispatch %.2f  dec report %.2f  dec submit %.2f" % (t(lambda: p.encode(d)), t(lambda: dw.decode(rraw)), t(lambda: dc.decode(spraw))))
def state_only():
    s = BrokerState(now=0.0, instance="x")
    s.on_worker(b"w", p.Hello(version=p.PROTOCOL_VERSION, role="worker", pool="d", queues=["default"], credit=N), 0)
    sub=dc.decode(spraw)
    t0=time.perf_counter()
    s.on_client(b"c", sub, 0); t1=time.perf_counter()
    s.dispatch(0); t2=time.perf_counter()
    out=s.take_outbox()
    rep=p.Report([p.Result(l.id,l.token,True,b"\xc0",None,None,0.0) for l in out.dispatch[b"w"]])
    t3=time.perf_counter(); s.on_worker(b"w", rep, 0); t4=time.perf_counter()
    return (t1-t0, t2-t1, t4-t3)
rs=[state_only() for _ in range(9)]
import statistics
print(where, "us/task: submit %.2f dispatch %.2f results %.2f" % tuple(statistics.median(x[i] for x in rs)/N*1e6 for i in range(3)))
