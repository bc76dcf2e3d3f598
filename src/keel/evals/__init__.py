"""Evals: suites of cases with checks, run through the feature pipeline and gated against a baseline."""
