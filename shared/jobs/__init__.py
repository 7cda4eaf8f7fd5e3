"""Async routing through a queue: a job submitted over HTTP (or sent by any producer), run by the
Service Bus trigger from a plain JobMessage, read back by id."""
