"""`actorq keys generate NAME`: a CurveZMQ key pair for a broker, a client or a worker node."""

from __future__ import annotations

import argparse
import sys

from actorq.cli.common import EXIT_CONFIG, EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="CurveZMQ key pairs (docs/security.md)")
    ksub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    gen = ksub.add_parser("generate", help="write NAME.key (public) and NAME.key_secret")
    gen.add_argument("name", help="whose key: broker, alice, worker-host-1 ...")
    gen.add_argument("--dir", default=".", help="where to write them (default: here)")
    gen.set_defaults(func=generate)


def generate(args: argparse.Namespace) -> int:
    from actorq.wire import curve

    try:
        public, secret = curve.generate(args.name, args.dir)
    except (curve.KeyFileError, OSError) as exc:
        print(f"actorq: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"public key: {public}  (give it to the broker's allow-list, or to clients)")
    print(f"secret key: {secret}  (keep it private: mode 600)")
    return EXIT_OK
