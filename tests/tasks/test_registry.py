import pytest

from actorq.tasks.registry import lookup, registered, task
from actorq.wire.payload import decode_args, encode_args


@task
def plain(x):
    return x


@task(queue="reports", priority=5, name="custom:name")
async def fancy():
    return None


def test_registration_names_and_defaults():
    reg = registered([__name__])
    assert set(reg) == {f"{__name__}:plain", "custom:name"}
    assert reg["custom:name"].is_async and reg["custom:name"].defaults == {"queue": "reports", "priority": 5}
    assert not reg[f"{__name__}:plain"].is_async
    assert plain(3) == 3  # still an ordinary function


def test_only_listed_modules_are_allowed():
    assert registered(["some.other.module"]) == {}
    assert lookup("os:system") is None


def test_unknown_options_are_an_error():
    with pytest.raises(TypeError, match="retires"):
        task(retires=3)


def test_args_codec_round_trip_and_clear_type_error():
    assert decode_args(encode_args((1, "a"), {"k": [1.5]})) == ([1, "a"], {"k": [1.5]})
    with pytest.raises(TypeError, match="cannot be encoded"):
        encode_args((object(),), None)
