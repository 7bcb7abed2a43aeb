"""``poolvec serve``: the FastAPI application, its routes, the index worker thread, thumbnails and the page."""
