"""What every command shares: exit codes, logging set-up, loading a config, finding and
calling the broker, and printing results as tables (rich) or JSON (`--json`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

DEFAULT_BROKER = "tcp://127.0.0.1:5555"  # [broker] bind's default
BROKER_ENV = "ACTORQ_BROKER"  # where the broker address comes from without --broker or -c
BROKER_HELP = (f"the broker's client endpoint, or several, comma-separated, of brokers "
               f"sharing a store (default: the [broker] bind of -c CONFIG, else "
               f"${BROKER_ENV}, else {DEFAULT_BROKER})")
CONNECT_TIMEOUT_S = 5.0
KEY_ENV, BROKER_KEY_ENV = "ACTORQ_KEY", "ACTORQ_BROKER_KEY"  # CurveZMQ key files


class CommandError(Exception):
    """A command that cannot go on: its message is printed and it exits EXIT_FAILURE
    (or the code given)."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def add_broker_options(parser: argparse.ArgumentParser, *, json_output: bool = True) -> None:
    parser.add_argument("--broker", default=None, help=BROKER_HELP)
    parser.add_argument("-c", "--config", default=None,
                        help="a node's config: the broker address is read from its [broker]")
    parser.add_argument("--timeout", type=float, default=None,
                        help=f"seconds to wait for the broker (default {CONNECT_TIMEOUT_S:g})")
    parser.add_argument("--client-key", default=None, help="CurveZMQ: this client's NAME.key_secret "
                        f"file (default: the node's key with -c CONFIG, else ${KEY_ENV})")
    parser.add_argument("--broker-key", default=None, help="CurveZMQ: the broker's public "
                        f"key file (default: from -c CONFIG, else ${BROKER_KEY_ENV})")
    if json_output:
        parser.add_argument("--json", action="store_true", help="print JSON, for scripts")


def broker_keys(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The CurveZMQ key files to connect with: flags, else the node's own keys from -c
    CONFIG (an operator on the broker's machine), else the environment."""
    key, broker_key = args.client_key, args.broker_key
    if key or broker_key:
        return key, broker_key
    if getattr(args, "config", None):
        cfg = _config(args.config)
        sec = cfg.security
        if sec.broker_key:
            return sec.broker_key, sec.broker_key
        if sec.key:
            return sec.key, sec.broker_public_key
    return os.environ.get(KEY_ENV) or None, os.environ.get(BROKER_KEY_ENV) or None


def _config(path: str):
    cfg = load_config(path)
    if cfg is None:
        raise CommandError(f"cannot read {path}", EXIT_CONFIG)
    return cfg


def broker_address(args: argparse.Namespace) -> str:
    if args.broker:
        return args.broker
    if getattr(args, "config", None):
        cfg = _config(args.config)
        if cfg.broker is None:
            raise CommandError(f"{args.config} has no [broker]; give --broker", EXIT_CONFIG)
        if cfg.broker.bind.endswith(":*"):
            raise CommandError(f"{args.config} binds the broker to a port picked at start "
                               "(*); give --broker", EXIT_CONFIG)
        return cfg.broker.bind.replace("tcp://*:", "tcp://127.0.0.1:").replace(
            "tcp://0.0.0.0:", "tcp://127.0.0.1:")
    return os.environ.get(BROKER_ENV) or DEFAULT_BROKER


def with_client(args: argparse.Namespace, work: Callable[[Any], int]) -> int:
    """Run `work(client)` against the broker; every actorq error becomes a clear message
    and a non-zero exit, a broker that does not answer within --timeout included."""
    from actorq.client.sync import Client
    from actorq.errors import ActorqError, BrokerUnavailable

    if args.timeout is None:
        args.timeout = CONNECT_TIMEOUT_S
    try:
        address = broker_address(args)
        key, broker_key = broker_keys(args)
        if "," in address:  # the brokers sharing a store: the client follows the leader
            address = [a.strip() for a in address.split(",") if a.strip()]
        with Client(address, connect_timeout=args.timeout,
                    request_timeout=max(args.timeout, 10.0), key=key,
                    broker_key=broker_key) as client:
            return work(client)
    except ValueError as exc:  # key files
        print(f"actorq: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except CommandError as exc:
        print(f"actorq: {exc}", file=sys.stderr)
        return exc.code
    except BrokerUnavailable as exc:
        print(f"actorq: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except ActorqError as exc:
        print(f"actorq: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def emit(args: argparse.Namespace, data: Any, title: str, columns: list[str],
         rows: Iterable[Iterable[Any]]) -> int:
    """Print `data` as JSON with --json, else a table of `rows` for people."""
    import msgspec

    if getattr(args, "json", False):
        print(json.dumps(msgspec.to_builtins(data), indent=2, default=str))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)
    return EXIT_OK


def ago(seconds: float) -> str:
    return f"{seconds:.1f} s ago"


def when(unix_s: float | None) -> str:
    if not unix_s:
        return "never"
    import datetime as dt

    return dt.datetime.fromtimestamp(unix_s, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def setup_logging(level: str, role: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)-7s {role}[%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )


def load_config(path: str):
    """The validated config, or None after printing why it is unusable."""
    from actorq.node import config

    try:
        return config.load(path)
    except config.ConfigError as exc:
        print(f"actorq: config error: {exc}", file=sys.stderr)
        return None
