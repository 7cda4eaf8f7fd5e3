"""The speed harness (the speed goals: docs/performance.md): `python -m bench.run`, `python -m bench.scale`."""
