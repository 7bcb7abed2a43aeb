"""The Ray Data engine (``--engine ray``): planning on the driver, embedding on an actor pool, writing from the
workers; its read and write tasks import no torch."""
