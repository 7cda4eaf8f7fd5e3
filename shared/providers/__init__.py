"""Model providers: one module per backend, all speaking OpenAI-shaped dicts to the service."""
