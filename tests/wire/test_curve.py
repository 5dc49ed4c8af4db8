"""CurveZMQ key files (wire/curve.py): made, read, and refused with the file named."""

import os

import pytest

from actorq import Client
from actorq.wire import curve


def test_a_pair_is_written_private_and_read_back(tmp_path):
    public, secret = curve.generate("alice", tmp_path)
    assert oct(os.stat(secret).st_mode & 0o777) == "0o600"
    assert curve.read_pair(secret)[0] == curve.read_public(public)
    assert curve.read_allowed([str(tmp_path)]) == {curve.read_public(public)}
    with pytest.raises(curve.KeyFileError, match="exists"):
        curve.generate("alice", tmp_path)


def test_bad_key_files_are_named(tmp_path):
    public, _ = curve.generate("bob", tmp_path)
    (tmp_path / "junk.key").write_text("hello")
    with pytest.raises(curve.KeyFileError, match="holds no secret key"):
        curve.read_pair(public)
    with pytest.raises(curve.KeyFileError, match="junk.key"):
        curve.read_public(tmp_path / "junk.key")
    with pytest.raises(ValueError, match="needs both"):
        curve.optional_client_curve(str(public), None)
    assert curve.optional_client_curve(None, None) is None


def test_a_client_with_a_missing_key_file_says_which(tmp_path):
    with pytest.raises(ValueError, match="nope.key_secret"):
        Client("tcp://127.0.0.1:1", key=str(tmp_path / "nope.key_secret"),
               broker_key=str(tmp_path / "nope.key"))
