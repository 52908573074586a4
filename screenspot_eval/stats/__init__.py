"""Paired statistics for A/B comparisons of per-sample outcomes."""
