"""Duplicates within one index: exact copies by content hash, near-duplicates by the neighbour graph."""
