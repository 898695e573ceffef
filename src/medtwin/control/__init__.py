"""Closing the loop: dose recommendations, model predictive control, clinician decisions, closed-loop trials."""
