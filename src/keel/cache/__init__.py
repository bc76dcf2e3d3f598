"""Caching of feature answers: exact (the whole normalised request) and semantic (a scoped, gated
nearest neighbour)."""
