"""The after-answer hooks of this package, found by module: each module but base and runner that
defines `build(deps)` contributes the hook it returns (see base.py)."""

from __future__ import annotations

import importlib
import pkgutil

from .base import AfterAnswerHook, HookDeps

_NOT_HOOKS = {"base", "runner"}


def discover(deps: HookDeps) -> list[AfterAnswerHook]:
    hooks: list[AfterAnswerHook] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in _NOT_HOOKS:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        build = getattr(module, "build", None)
        hook = build(deps) if build is not None else None
        if hook is not None:
            hooks.append(hook)
    return hooks
