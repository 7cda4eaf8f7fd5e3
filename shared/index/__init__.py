"""Vector indexes of labelled routing examples."""
