"""The LLM Router package: all logic behind function_app.py."""

import os

# One BLAS thread: the router's vector math is small and latency-bound, and OpenBLAS's extra
# threads fought the event loop for the container's cores (RSS after load 397 -> 283 MB,
# docs/performance.md). Set before numpy is first imported; an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
