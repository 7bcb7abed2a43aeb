"""How the Ray engine runs (:class:`RayOptions`), and the one parser of an ``engine`` choice. No Ray, torch or
numpy here: the CLI reads it before anything heavy loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from poolvec.indexer.errors import IndexerError

INSTALL_HINT = 'the Ray engine needs Ray: pip install "poolvec[ray]" (or pip install "ray[data]>=2.51")'
#: The engines: embed in this process, or on a Ray cluster's actors.
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class RayOptions:
    """How ``engine="ray"`` runs.

    Args:
        address: the Ray cluster (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``); ``None``: the one
            ``RAY_ADDRESS`` or a local ``ray start`` names, else a Ray started in this process.
        actors: embedding actors (each loads the model once).
        gpus_per_actor: GPUs per actor (0: CPU; fractions share a GPU).
        cpus_per_actor: CPUs Ray reserves per actor; also its torch threads, unless ``threads`` says otherwise.
        threads: torch threads per actor (default: ``cpus_per_actor``, at least 1).
        batch_size: files per actor call.
        shared_files: every node sees the files at the same paths (a network file system): read them anywhere,
            instead of on the driver's node.
        init: more ``ray.init`` arguments when this process starts Ray (e.g. ``{"num_cpus": 2}``).
    """

    address: str | None = None
    actors: int = 2
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    threads: int | None = None
    batch_size: int = 32
    shared_files: bool = False
    init: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.actors < 1 or self.batch_size < 1 or self.cpus_per_actor <= 0 or self.gpus_per_actor < 0:
            raise IndexerError(
                "Ray engine: actors and batch_size must be ≥ 1, cpus_per_actor > 0 and gpus_per_actor ≥ 0, got "
                f"actors={self.actors}, batch_size={self.batch_size}, cpus_per_actor={self.cpus_per_actor}, "
                f"gpus_per_actor={self.gpus_per_actor}"
            )
        if self.threads is not None and self.threads < 1:
            raise IndexerError(f"Ray engine: threads must be ≥ 1, got {self.threads}")

    @property
    def torch_threads(self) -> int:
        """Torch threads in each actor."""
        return self.threads or max(1, int(self.cpus_per_actor))


def parse_engine(engine: str | RayOptions, **settings: Any) -> RayOptions | None:
    """``None`` for the single-process engine (``"local"``); for ``"ray"`` (with ``settings`` as :class:`RayOptions`
    fields) or a :class:`RayOptions`, the options — once Ray is found installed. Anything else is refused."""
    if isinstance(engine, str) and engine not in ENGINES:
        raise IndexerError(f"--engine must be local or ray, got {engine!r}")
    if engine == "local":
        return None
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise IndexerError(INSTALL_HINT) from None
    return engine if isinstance(engine, RayOptions) else RayOptions(**settings)


__all__ = ["ENGINES", "INSTALL_HINT", "RayOptions", "parse_engine"]
