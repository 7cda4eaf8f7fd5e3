"""Text encoders: prompt text -> unit-length vectors for the example index."""
