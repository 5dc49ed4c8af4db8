"""`actorq token new`: a fresh HTTP API token and the config entry that admits it."""

from __future__ import annotations

import argparse

from actorq.cli.common import EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    token = sub.add_parser("token", help="HTTP API tokens")
    tsub = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    new = tsub.add_parser("new", help="print a fresh token and its [[http.tokens]] entry")
    new.add_argument("--name", required=True, help="who or what will use it")
    new.add_argument("--role", choices=("read", "admin"), default="read",
                     help="read: GET routes only; admin: every route (default read)")
    new.set_defaults(func=new_token)


def new_token(args: argparse.Namespace) -> int:
    from actorq.http.auth import digest, new_token

    token = new_token()
    print(f"token (shown once; keep it secret): {token}\n")
    print("config entry (the digest only; add it to the node's config):\n")
    print(f'[[http.tokens]]\nname = "{args.name}"\nrole = "{args.role}"\n'
          f'sha256 = "{digest(token)}"')
    return EXIT_OK
