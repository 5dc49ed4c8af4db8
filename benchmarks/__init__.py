"""The benchmark harness: `bin/bench` (python -m benchmarks). Numbers, never assertions."""
