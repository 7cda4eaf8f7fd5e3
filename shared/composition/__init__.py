"""The composition root: the process's services, built once, typed and frozen.

- services.py: what the entry points get (Services);
- assemble.py: Services from given parts (tests hand in theirs; defaults are the in-memory twins);
- backends.py: which backend serves each concept in production, chosen from settings;
- process.py: the one Services of this process, for the entry points only (function_app.py, the
  CLI, the local host).
"""
