"""The broker actor: the pure BrokerState (state/) and the socket loop around it (loop.py)."""
