"""Weakly supervised video anomaly detection (Cao et al., ICME 2023)."""
