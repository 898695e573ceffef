"""Causal what-ifs (placeholder)."""
