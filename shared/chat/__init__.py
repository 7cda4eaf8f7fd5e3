"""The chat path: decide -> admit -> cache -> call with fallback -> account -> log -> after-answer
hooks (pipeline.py runs them in that order; each step is its own module here). It returns a plain
ChatResult: HTTP headers and SSE framing belong to shared/api/, job results to shared/jobs/."""
