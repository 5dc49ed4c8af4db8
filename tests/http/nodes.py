"""The node the gateway's tests run: a broker, the gateway on a free port and two
workers, with `{tokens}` for the [[http.tokens]] a test wants."""

NODE = """
[node]
shutdown_grace = 5
[broker]
bind = "tcp://127.0.0.1:*"
worker_bind = "tcp://127.0.0.1:*"
heartbeat_interval = 0.2
[http]
bind = "127.0.0.1:0"
{tokens}
[[pools]]
name = "default"
workers = 2
tasks = ["tests.apps.faulty", "actorq.demo"]
"""
