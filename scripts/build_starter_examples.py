"""Build shared/data/starter_examples.csv.gz from the RouteLLM MMLU evaluation data.

The strong model's outcomes (GPT-4-1106-preview) label the `frontier` tier and the weak
model's (Mixtral-8x7B-Instruct) the `economy` tier, so that `auto` routing works out of the
box for any catalog. Source: lm-sys/RouteLLM (Apache License 2.0); see shared/data/README.md.

    python scripts/build_starter_examples.py ../shared/data/routing-eval/mmlu
"""

from __future__ import annotations

import csv
import gzip
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "shared" / "data" / "starter_examples.csv.gz"
MAPPING = {"gpt-4-1106-preview": "tier:frontier", "mistralai/Mixtral-8x7B-Instruct-v0.1": "tier:economy"}


def main(src: str) -> None:
    rows = 0
    with gzip.open(OUT, "wt", encoding="utf-8", newline="", compresslevel=9) as out:
        writer = csv.writer(out)
        writer.writerow(["prompt", *MAPPING.values()])
        for path in sorted(Path(src).glob("*.csv")):
            with path.open(encoding="utf-8", newline="") as fh:
                for row in csv.DictReader(fh):
                    writer.writerow([row["prompt"], *(row[c] for c in MAPPING)])
                    rows += 1
    print(f"wrote {rows} examples to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/routing-eval/mmlu")
