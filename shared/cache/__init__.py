"""Caches: exact responses, semantic matches, embeddings. One protocol, one module per backend."""
