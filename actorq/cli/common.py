"""What every command shares: exit codes, logging set-up, loading a config."""

from __future__ import annotations

import argparse
import logging
import os
import sys

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

DEFAULT_BROKER = "tcp://127.0.0.1:5555"  # [broker] bind's default
BROKER_ENV = "ACTORQ_BROKER"  # where --broker comes from when it is not given
BROKER_HELP = f"the broker's client endpoint (default: ${BROKER_ENV}, else {DEFAULT_BROKER})"


def broker_address(args: argparse.Namespace) -> str:
    return args.broker or os.environ.get(BROKER_ENV) or DEFAULT_BROKER


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
