"""Reviewing duplicates: decisions that stick, the best copy suggested with its reason, and resolutions that can
be undone (a journal written before every file operation)."""
