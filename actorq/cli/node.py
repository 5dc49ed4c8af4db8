"""`actorq run` and `actorq check`: start a node from its config, or only check the config."""

from __future__ import annotations

import argparse

from actorq.cli.common import EXIT_CONFIG, EXIT_OK, load_config, setup_logging


def add_commands(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a node: the broker, gateway and worker pools a "
                         "config names")
    run.add_argument("config", help="path to a TOML config, e.g. configs/local.toml")
    run.add_argument("--ready-file", help="write the resolved endpoints here as JSON once "
                     "every actor is up")
    run.set_defaults(func=run_node)

    check = sub.add_parser("check", help="validate a config file and exit")
    check.add_argument("config")
    check.set_defaults(func=check_config)


def run_node(args: argparse.Namespace) -> int:
    from actorq.node import node

    cfg = load_config(args.config)
    if cfg is None:
        return EXIT_CONFIG
    setup_logging(cfg.node.log_level, "node")
    from setproctitle import setproctitle

    setproctitle(f"actorq: node {args.config}")
    return node.run(cfg, args.ready_file)


def check_config(args: argparse.Namespace) -> int:
    """Everything `run` checks, and each pool's task modules imported for real (a
    module that is there but fails to import is named with its error)."""
    import importlib
    import sys

    cfg = load_config(args.config)
    if cfg is None:
        return EXIT_CONFIG
    for i, pool in enumerate(cfg.pools):
        for j, module in enumerate(pool.tasks):
            try:
                importlib.import_module(module)
            except Exception as exc:  # noqa: BLE001 (whatever a user's module raises)
                print(f"actorq: config error: {args.config}: pools[{i}].tasks[{j}]: module "
                      f"{module!r} fails to import: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
                return EXIT_CONFIG
    print(f"{args.config}: ok ({'broker, ' if cfg.broker else ''}"
          f"{'http, ' if cfg.http else ''}{len(cfg.pools)} pool(s))")
    return EXIT_OK
