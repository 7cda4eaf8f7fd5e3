"""Self-labelling from traffic: a sampled answer is also asked of a model of another tier, a
judge model compares the two answers pairwise in both orders, and the verdict becomes a labelled
example of the tenant (shared/chat/hooks/shadow.py starts it after the answer; docs/routing-quality.md)."""
