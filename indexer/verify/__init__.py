"""Verified matches: local features of indexed files and queries (computed when needed, kept in memory), the
shortlist of a search widened by query-side regions and re-ranked by verification, and the verification of
duplicate pairs (docs/EVALUATION.md, "Verification")."""
