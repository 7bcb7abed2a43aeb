"""Operations that read or rewrite many rows of a collection: sync with folders, tune, DBA, reroot and prune,
the markers that make them resumable after kill -9, and the Ray engine."""
