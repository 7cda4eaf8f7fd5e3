"""The speed harness (../shared/brief/BENCH.md): `python -m bench.run`, `python -m bench.scale`."""
