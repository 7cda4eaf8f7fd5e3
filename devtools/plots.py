"""The evaluation plot (python -m shared.cli evaluate --plot FILE): accuracy against the share of
strong-model calls, with both single-model lines. A development tool: matplotlib is in
requirements-local.txt, not in the container."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

from shared.evaluation import curve

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_curve(scores: np.ndarray, strong: np.ndarray, weak: np.ndarray, path: Path, *, title: str) -> None:
    shares, acc = curve(scores, strong, weak)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.plot(shares * 100, acc, label="router", linewidth=2)
    ax.plot([0, 100], [weak.mean(), strong.mean()], linestyle=":", color="grey", label="random routing")
    ax.axhline(strong.mean(), color="tab:green", linestyle="--", label=f"strong only ({strong.mean():.3f})")
    ax.axhline(weak.mean(), color="tab:red", linestyle="--", label=f"weak only ({weak.mean():.3f})")
    ax.axhline(0.95 * strong.mean(), color="tab:green", linestyle=":", alpha=0.5, label="95% of strong")
    ax.set_xlabel("strong-model calls (%)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
