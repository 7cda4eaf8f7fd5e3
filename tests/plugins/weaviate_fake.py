"""pytest fixtures (plugin module, registered in tests/conftest.py)."""
