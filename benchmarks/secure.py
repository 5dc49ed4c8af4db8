"""What CurveZMQ costs: the throughput workloads with keys against the same without,
runs interleaved (workloads._interleaved_batch_rates says why)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from actorq.wire import curve
from .workloads import (
    REPEATS,
    Figure,
    Scale,
    _batch,
    _interleaved_batch_rates,
    _single,
    figure,
    node_toml,
)


def curve_cost(scale: Scale) -> list[Figure]:
    figures = []
    with tempfile.TemporaryDirectory(prefix="actorq-bench-keys-") as tmp:
        keys = Path(tmp)
        curve.generate("broker", keys)
        curve.generate("client", keys / "clients")
        secure = node_toml() + (f'[security]\nbroker_key = "{keys}/broker.key_secret"\n'
                                f'client_keys = ["{keys}/clients"]\n')
        configs = {"plaintext": node_toml(), "curve": secure}
        options = {"curve": {"key": str(keys / "clients" / "client.key_secret"),
                             "broker_key": str(keys / "broker.key")}}
        for name, submit, n in (("submit_many", _batch, scale.batch_tasks // 2),
                                ("one submit each", _single, scale.single_tasks)):
            rates = _interleaved_batch_rates(configs, n, options, submit)
            figures += [
                figure("curve", f"{n} no-op tasks, {name}, plaintext (median of {REPEATS}, "
                       "interleaved with the next)", rates["plaintext"], "tasks/s"),
                figure("curve", "same, CurveZMQ with a submit key", rates["curve"], "tasks/s"),
                figure("curve", f"{name}: CurveZMQ vs plaintext",
                       100 * rates["curve"] / rates["plaintext"], "%", ">=", 80),
            ]
    return figures
