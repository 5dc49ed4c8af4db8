"""CurveZMQ key files: making them, reading them, and putting them on sockets.

Key files are ZeroMQ's own certificate format, written and read by pyzmq's
zmq.auth (`NAME.key` holds the public key, `NAME.key_secret` both halves), so
keys made by other ZeroMQ tools work here too. Who may connect is decided by the
broker's authenticator (broker/zap.py); this module only handles keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth


class KeyFileError(ValueError):
    """A key file that is missing, unreadable or of the wrong kind; names the file."""


@dataclass(frozen=True)
class ClientCurve:
    """What a connecting socket needs: its own pair and the broker's public key (z85)."""

    public: bytes
    secret: bytes
    server: bytes

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret
        sock.curve_serverkey = self.server


def generate(name: str, directory: str | Path) -> tuple[Path, Path]:
    """Write NAME.key and NAME.key_secret into `directory`; refuse to overwrite."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    public, secret = d / f"{name}.key", d / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise KeyFileError(f"{path} exists: remove it first, or pick another name")
    made_public, made_secret = zmq.auth.create_certificates(d, name)
    Path(made_secret).chmod(0o600)
    return Path(made_public), Path(made_secret)


def read_pair(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) from a NAME.key_secret file."""
    public, secret = _load(path)
    if secret is None:
        raise KeyFileError(f"{path}: holds no secret key (give the .key_secret file)")
    return public, secret


def read_public(path: str | Path) -> bytes:
    """The public key of a NAME.key or NAME.key_secret file."""
    return _load(path)[0]


def read_allowed(paths: list[str]) -> set[bytes]:
    """Public keys from files and directories (every *.key file in one)."""
    keys: set[bytes] = set()
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            found = [f for f in sorted(path.iterdir()) if f.suffix == ".key"]
            keys.update(read_public(f) for f in found)
        else:
            keys.add(read_public(path))
    return keys


def client_curve(key: str | Path, broker_key: str | Path) -> ClientCurve:
    """A connecting socket's keys: its own pair's file, and the broker's public key file
    (or the broker's pair, on the broker's own node)."""
    public, secret = read_pair(key)
    return ClientCurve(public, secret, read_public(broker_key))


def optional_client_curve(key: str | None, broker_key: str | None) -> ClientCurve | None:
    """A client's keys from its key files, or None without them; ValueError (naming
    the file) for a missing half or a bad file."""
    if key is None and broker_key is None:
        return None
    if key is None or broker_key is None:
        raise ValueError("CurveZMQ needs both key (this client's .key_secret file) and "
                         "broker_key (the broker's public key file)")
    try:
        return client_curve(key, broker_key)
    except KeyFileError as exc:
        raise ValueError(str(exc)) from None


def _load(path: str | Path) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise KeyFileError(f"{path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: not a ZeroMQ key file ({exc})") from None
    if public is None or len(public) != 40:
        raise KeyFileError(f"{path}: not a ZeroMQ key file (no 40-character public-key)")
    return public, secret
