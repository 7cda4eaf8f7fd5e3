"""Circuit breakers per model: in-process, or shared across replicas through Redis."""
