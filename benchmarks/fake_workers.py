"""Many simulated workers in one process, speaking the real worker protocol.

`python -m benchmarks.fake_workers ENDPOINT N CREDIT` opens N DEALER sockets to a
broker's worker endpoint, says Hello on each and answers every Dispatch at once
with a successful Report. It measures how the broker scales with connected
workers without being limited by how many processes this machine can run.
"""

from __future__ import annotations

import os
import signal
import sys

import zmq

from actorq.wire import protocol as p

NONE_RESULT = b"\xc0"  # msgpack of None


def main(endpoint: str, n: int, credit: int) -> int:
    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    ctx = zmq.Context()
    poller = zmq.Poller()
    socks = []
    for i in range(n):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.IDENTITY, f"fake.{os.getpid()}.{i}".encode())
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        s.send(p.encode(p.Hello(version=p.PROTOCOL_VERSION, role="worker", pool="fake",
                                queues=["default"], credit=credit, pid=os.getpid())))
        poller.register(s, zmq.POLLIN)
        socks.append(s)
    decoder = p.decoder(p.BrokerToWorker)
    print("ready", flush=True)
    while not stop:
        for sock, _ in poller.poll(200):
            while True:
                try:
                    data = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                msg = decoder.decode(data)
                if isinstance(msg, p.Dispatch):
                    sock.send(p.encode(p.Report([p.Result(l.id, l.token, True, NONE_RESULT)
                                                 for l in msg.leases])))
                elif isinstance(msg, p.Beat):
                    sock.send(p.encode(p.Heartbeat()))
    for s in socks:
        s.close()
    ctx.term()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
