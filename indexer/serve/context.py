"""What the routes of one app share: the index worker, the settings, the thumbnail cache, the uploads' folder, the
duplicates kept per parameters, and the bearer-token check."""

# No `from __future__ import annotations`: FastAPI reads the dependency's signature at run time.
import secrets
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from poolvec.indexer.serve.settings import ServeSettings
from poolvec.indexer.serve.thumbs import ThumbnailCache
from poolvec.indexer.serve.worker import IndexWorker

_bearer = HTTPBearer(auto_error=False, description="The token given to `poolvec serve --token`.")


@dataclass
class Context:
    """One app's shared parts (see the module's docstring)."""

    worker: IndexWorker
    settings: ServeSettings
    thumbnails: ThumbnailCache
    upload_dir: str = ""
    dups: dict[tuple, dict[str, Any]] = field(default_factory=dict)

    @property
    def api(self) -> list[Any]:
        """The dependencies of every ``/api`` route: the bearer token, when one is set."""
        return [Depends(self._authorised)]

    def _authorised(self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        token = self.settings.token
        if token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        # headers arrive as Latin-1: compare the bytes as sent (a token is printable ASCII: ServeSettings)
        if not secrets.compare_digest(given.encode("latin-1", "replace"), token.encode()):
            raise HTTPException(
                401,
                "missing or wrong token: send 'Authorization: Bearer TOKEN' (the token given to poolvec serve)",
                headers={"WWW-Authenticate": "Bearer"},
            )


__all__ = ["Context"]
