"""Labelled routing examples: their types, CSV form, import/export, and learning them from feedback."""
