"""Bad HTTP clients: one WARNING line per kind and peer, and idle connections closed."""

from __future__ import annotations

import logging
import socket
import sys
import urllib.request

from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from actorq.http.badinput import MalformedRequestLog
from actorq.node.ratelog import MAX_KEYS
from tests.conftest import BASE_CONFIG


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record_for(exc: BaseException | None, peer: str = "10.0.0.1") -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1,
                             "Error handling request from %s", (peer,), exc_info)


def test_first_malformed_request_becomes_one_warning_line_without_traceback():
    f = MalformedRequestLog(clock=Clock())
    r = record_for(BadHttpMessage("Invalid character in Content-Length:\n\n  b'abc'"))
    assert f.filter(r)
    assert r.levelname == "WARNING" and r.exc_info is None
    assert r.getMessage() == ("malformed HTTP request from 10.0.0.1: "
                              "400 Invalid character in Content-Length:")


def test_repeats_within_the_window_are_counted_and_reported_with_the_next_line():
    clock = Clock()
    f = MalformedRequestLog(window_s=60, clock=clock)
    assert f.filter(record_for(BadHttpMessage("bad")))
    assert [f.filter(record_for(BadHttpMessage("bad"))) for _ in range(5)] == [False] * 5
    # another kind, and another peer, each get their own line
    assert f.filter(record_for(LineTooLong("line", "8190")))
    assert f.filter(record_for(BadHttpMessage("bad"), peer="10.0.0.2"))
    clock.now = 61
    r = record_for(BadHttpMessage("bad"))
    assert f.filter(r)
    assert "(5 more like it in the last 60 s)" in r.getMessage()


def test_our_own_faults_keep_their_traceback():
    f = MalformedRequestLog(clock=Clock())
    try:
        raise RuntimeError("a bug of ours")
    except RuntimeError:
        r = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1,
                              "Error handling request from %s", ("10.0.0.1",),
                              sys.exc_info())
    assert f.filter(r)
    assert r.levelname == "ERROR" and r.exc_info is not None
    plain = record_for(None)
    assert f.filter(plain) and plain.levelname == "ERROR"


def test_remembered_peers_are_bounded():
    clock = Clock()
    f = MalformedRequestLog(clock=clock)
    for i in range(MAX_KEYS * 3):
        clock.now = i * 0.001
        assert f.filter(record_for(BadHttpMessage("bad"), peer=f"peer{i}"))
    assert len(f.throttle) <= MAX_KEYS


def test_a_flood_of_malformed_requests_logs_one_line_and_the_gateway_still_serves(node):
    n = node(workers=1)
    host, port = n.info["http"].rsplit(":", 1)
    for _ in range(50):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
            reply = s.recv(200)
        assert b" 400 " in reply.split(b"\r\n", 1)[0]
    with urllib.request.urlopen(f"{n.http}/health", timeout=5) as resp:
        assert resp.status == 200
    log = n.log()
    assert "Traceback" not in log
    assert log.count("malformed HTTP request from 127.0.0.1: 400") == 1


def test_idle_and_half_sent_connections_are_closed_after_idle_timeout(node):
    config = BASE_CONFIG.format(workers=1, concurrency=1, prefetch=0, grace=10.0,
                                heartbeat=1.0, queues='["default"]', broker_extra="")
    n = node(config.replace('bind = "127.0.0.1:0"', 'bind = "127.0.0.1:0"\nidle_timeout = 0.5'))
    host, port = n.info["http"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as silent, \
            socket.create_connection((host, int(port)), timeout=10) as half:
        half.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finished
        assert silent.recv(100) == b""  # closed by the gateway, not timed out here
        assert half.recv(100) == b""
    with urllib.request.urlopen(f"{n.http}/health", timeout=5) as resp:
        assert resp.status == 200
