"""Shared by every stage, importing nothing else of pipeline: command-line helpers (flags, progress,
errors; :mod:`.cli`), atomic writes (:mod:`.io`) and the metrics (frame- and video-level ROC-AUC,
AP, reports; :mod:`.metrics`).
"""
