"""[security] and TLS in the config: keys that load, and no insecure exposure by accident."""

import logging
import subprocess
from pathlib import Path

import pytest

from actorq.node import security
from actorq.node.config import ConfigError, parse
from actorq.wire import curve

NODE = """
[broker]
bind = "{bind}"
worker_bind = "tcp://127.0.0.1:*"
[[pools]]
name = "default"
tasks = ["actorq.demo"]
"""


def config(tmp_path: Path, text: str):
    f = tmp_path / "node.toml"
    f.write_text(text)
    return parse(text, str(f))


def refused(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        config(tmp_path, text)
    return err.value


@pytest.mark.parametrize("bind", ["tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://10.1.2.3:5555"])
def test_zeromq_beyond_loopback_without_curve_is_refused_unless_allowed(tmp_path, bind):
    err = refused(tmp_path, NODE.format(bind=bind))
    assert err.key == "broker.bind" and "without CurveZMQ" in err.reason
    assert "allow_insecure" in err.reason
    cfg = config(tmp_path, NODE.format(bind=bind) + "[security]\nallow_insecure = true\n")
    assert [key for key, _ in security.exposures(cfg)] == ["broker.bind"]


def test_curve_keys_make_an_exposed_broker_acceptable_and_paths_are_from_the_config(tmp_path):
    curve.generate("broker", tmp_path / "keys")
    curve.generate("alice", tmp_path / "keys" / "clients")
    cfg = config(tmp_path, NODE.format(bind="tcp://0.0.0.0:5555") + """
[security]
broker_key = "keys/broker.key_secret"
client_keys = ["keys/clients"]
""")
    assert cfg.security.broker_key == str(tmp_path / "keys" / "broker.key_secret")
    assert security.exposures(cfg) == []
    assert security.broker_curve(cfg).key == cfg.security.broker_key


@pytest.mark.parametrize("extra, key, reason", [
    ('broker_key = "nope.key_secret"', "security.broker_key", "nope.key_secret"),
    ('broker_key = "keys/broker.key"', "security.broker_key", "holds no secret key"),
    ('client_keys = ["keys/clients"]', "security.client_keys", "need security.broker_key"),
    ('broker_key = "keys/broker.key_secret"\nworker_keys = ["keys/missing.key"]',
     "security.worker_keys[0]", "missing.key"),
    ('key = "keys/broker.key_secret"', "security.broker_public_key", "give both"),
])
def test_bad_keys_are_named_by_their_config_key(tmp_path, extra, key, reason):
    curve.generate("broker", tmp_path / "keys")
    (tmp_path / "keys" / "clients").mkdir()
    err = refused(tmp_path, NODE.format(bind="tcp://127.0.0.1:*") + f"[security]\n{extra}\n")
    assert (err.key, reason in err.reason) == (key, True), err


def test_a_worker_node_joining_a_remote_broker_needs_keys_or_an_override(tmp_path):
    text = '[[pools]]\nname = "x"\ntasks = ["actorq.demo"]\nbroker = "tcp://10.0.0.5:5556"\n'
    assert refused(tmp_path, text).key == "pools[0].broker"
    curve.generate("me", tmp_path)
    curve.generate("broker", tmp_path)
    cfg = config(tmp_path, text + '[security]\nkey = "me.key_secret"\n'
                 'broker_public_key = "broker.key"\n')
    paths = security.broker_curve(cfg)
    assert paths.load().server == curve.read_public(tmp_path / "broker.key")


def test_a_gateway_beyond_loopback_needs_tls(tmp_path):
    text = NODE.format(bind="tcp://127.0.0.1:*") + """
[http]
bind = "0.0.0.0:8080"
allow_anonymous = true
"""
    err = refused(tmp_path, text)
    assert err.key == "http.bind" and "without TLS" in err.reason
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(tmp_path / "tls.key"),
                    "-out", str(tmp_path / "tls.crt")], check=True, capture_output=True)
    ok = text.replace("allow_anonymous = true", 'allow_anonymous = true\ntls_cert = "tls.crt"\n'
                      'tls_key = "tls.key"')
    assert security.exposures(config(tmp_path, ok)) == []
    bad = ok.replace('tls_key = "tls.key"', 'tls_key = "tls.crt"')
    assert refused(tmp_path, bad).key == "http.tls_cert"


def test_an_allowed_exposure_is_warned_at_every_start(tmp_path, caplog):
    cfg = config(tmp_path, NODE.format(bind="tcp://0.0.0.0:5555")
                 + "[security]\nallow_insecure = true\n")
    with caplog.at_level(logging.WARNING):
        security.warn_exposures(cfg)
    assert "insecure" in caplog.text and "broker.bind" in caplog.text
