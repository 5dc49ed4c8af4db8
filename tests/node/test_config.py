import pytest

from actorq.node.config import ConfigError, load, parse

GOOD = """
[broker]
bind = "tcp://127.0.0.1:*"
worker_bind = "tcp://127.0.0.1:*"
[http]
bind = "127.0.0.1:0"
[[pools]]
name = "default"
tasks = ["actorq.demo"]
"""


def test_good_config_has_defaults():
    cfg = parse(GOOD)
    assert cfg.pools[0].workers == 2
    assert cfg.pools[0].prefetch == 0  # adaptive credit (worker/credit.py)
    assert cfg.broker.max_payload_bytes == 10 * 1024 * 1024
    assert cfg.node.shutdown_grace == 30
    assert cfg.broker.spin_us == 600


@pytest.mark.parametrize(
    "text, key, reason",
    [
        (GOOD.replace('name = "default"', 'name = "default"\nwrokers = 3'), "pools[0].wrokers",
         "unknown key"),
        (GOOD.replace("[http]", "[http]\nport = 1"), "http.port", "unknown key"),
        (GOOD.replace('name = "default"', 'name = "default"\nworkers = "two"'),
         "pools[0].workers", "Expected `int`, got `str`"),
        (GOOD + "[bogus]\n", "bogus", "unknown key"),
        (GOOD.replace('name = "default"', 'name = "default"\nworkers = 0'),
         "pools[0].workers", "must be >= 1"),
        (GOOD.replace('bind = "127.0.0.1:0"', 'bind = "nowhere"'), "http.bind", "HOST:PORT"),
        (GOOD.replace('name = "default"', 'name = "default"\nmin_workers = 4\nmax_workers = 2'),
         "pools[0].min_workers", "4 is over max_workers 2"),
        (GOOD.replace('name = "default"', 'name = "default"\nmax_workers = -1'),
         "pools[0].max_workers", "must be >= 1"),
        (GOOD.replace('name = "default"', 'name = "default"\nscale_down_after = 0'),
         "pools[0].scale_down_after", "must be > 0"),
        (GOOD.replace('"tcp://127.0.0.1:*"\nworker', '"tcp://127.0.0.1:99999"\nworker'),
         "broker.bind", "port '99999' is not in 1..65535"),
        (GOOD.replace('worker_bind = "tcp://127.0.0.1:*"', 'worker_bind = "tcp://127.0.0.1:7000"')
         .replace('bind = "tcp://127.0.0.1:*"', 'bind = "tcp://127.0.0.1:7000"', 1),
         "broker.worker_bind", "same endpoint as broker.bind"),
        (GOOD.replace('bind = "127.0.0.1:0"', 'bind = "127.0.0.1:99999"'), "http.bind",
         "0..65535"),
        ("[node]\nlog_level = \"LOUD\"\n" + GOOD, "node.log_level", "'LOUD' is not one of"),
        (GOOD.replace('bind = "127.0.0.1:0"', 'bind = "127.0.0.1:0"\nidle_timeout = 0'),
         "http.idle_timeout", "must be > 0"),
        (GOOD.replace('tasks = ["actorq.demo"]', 'tasks = ["actorq.demo", "no.such.module"]'),
         "pools[0].tasks[1]", "no module 'no.such.module'"),
        (GOOD.replace('tasks = ["actorq.demo"]', "tasks = []"), "pools[0].tasks", "at least one"),
        (GOOD.replace('worker_bind = "tcp://127.0.0.1:*"',
                      'worker_bind = "tcp://127.0.0.1:*"\nspin_us = -1'),
         "broker.spin_us", "must be in 0..10000"),
        (GOOD + '[storage]\nurl = "postgresql://db/q"\n', "broker.bind",
         "may wait as a standby"),
        (GOOD.replace(":*", ":7001", 1).replace(":*", ":7002", 1)
         + '[storage]\nurl = "postgresql://db/q"\nlease = 0.01\n', "storage.lease",
         "between 0.2 and 60"),
        (GOOD.replace('name = "default"', 'name = "default"\nbroker = []'),
         "pools[0].broker", "an empty list"),
        (GOOD.replace('name = "default"', 'name = "default"\nbroker = ["tcp://a:1", "b:2"]'),
         "pools[0].broker[1]", "tcp:// or ipc://"),
    ],
)
def test_bad_config_names_file_and_key(text, key, reason):
    with pytest.raises(ConfigError) as err:
        parse(text, "node.toml")
    assert err.value.file == "node.toml"
    assert err.value.key == key
    assert reason in err.value.reason
    assert str(err.value).startswith(f"node.toml: {key}: ")


def test_worker_only_node_must_name_its_broker():
    text = '[[pools]]\nname = "x"\ntasks = ["actorq.demo"]\n'
    with pytest.raises(ConfigError) as err:
        parse(text, "w.toml")
    assert err.value.key == "pools[0].broker"
    cfg = parse(text + 'broker = "tcp://127.0.0.1:5556"\n')
    assert cfg.broker is None and cfg.pools[0].broker


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse("[broker", "x.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.toml")


def test_shipped_configs_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    files = sorted(root.glob("*.toml"))
    assert files
    for f in files:
        load(f)


def test_an_elastic_pool_starts_at_workers_kept_within_its_bounds():
    cfg = parse(GOOD.replace('name = "default"', 'name = "default"\nmin_workers = 3\n'
                             'max_workers = 6'))
    pool = cfg.pools[0]
    assert pool.bounds == (3, 6) and pool.start_workers == 3 and pool.scale_down_after == 30.0
    assert parse(GOOD).pools[0].bounds == (2, 2)  # without bounds the pool stays at workers



def test_a_pool_may_name_every_broker_sharing_a_store():
    cfg = parse('[[pools]]\ntasks = ["actorq.demo"]\n'
                'broker = ["tcp://10.0.0.1:5556", "tcp://10.0.0.2:5556"]\n'
                '[security]\nallow_insecure = true\n')
    assert cfg.pools[0].broker == ["tcp://10.0.0.1:5556", "tcp://10.0.0.2:5556"]
