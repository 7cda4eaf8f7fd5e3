"""The peer: LiteLLM's proxy in its own virtual environment (`.venv-litellm`), one worker,
one model pointing at the same fake upstream. Installed on first use at a pinned version so
that runs on different days compare the same peer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shared.config import PROJECT_DIR

LITELLM_VERSION = "1.108.7"
VENV = PROJECT_DIR / ".venv-litellm"
MODEL_NAME = "bench-model"


def executable() -> Path:
    return VENV / "bin" / "litellm"


def installed_version() -> str | None:
    python = VENV / "bin" / "python"
    if not python.exists():
        return None
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or None


def ensure_installed() -> str:
    version = installed_version()
    if version and executable().exists():
        return version
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {VENV} (once; a few minutes)", flush=True)
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [
            str(VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"litellm[proxy]=={LITELLM_VERSION}",
        ],
        check=True,
        timeout=1800,
    )
    return installed_version() or LITELLM_VERSION


def write_config(path: Path, upstream_base_url: str) -> Path:
    path.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL_NAME}\n"
        "    litellm_params:\n"
        "      model: openai/large\n"
        f"      api_base: {upstream_base_url}\n"
        "      api_key: sk-bench-not-a-secret\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    return path


def argv(config: Path, port: int) -> list[str]:
    return [
        str(executable()),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]


ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOG": "ERROR",
    "LITELLM_TELEMETRY": "False",
    "DISABLE_SCHEMA_UPDATE": "True",
}
