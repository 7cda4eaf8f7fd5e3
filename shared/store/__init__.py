"""Durable records: request log, usage, feedback, jobs, backup checks."""
