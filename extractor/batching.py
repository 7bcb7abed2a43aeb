"""Batching without reordering: items of one shape go out together as soon as a batch is full.

Images arrive in input order with different shapes (landscape, portrait, other sizes). Waiting for a whole
window before batching leaves the model idle while the window decodes; batching strictly in order gives
half-empty batches. :func:`batched_in_order` keeps one open batch per shape, hands a batch to ``process`` the
moment it is full, and releases items in input order once theirs has been processed. A bounded number of
items waits at any time, so memory stays flat however many images stream through.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def batched_in_order(
    items: Iterable[T],
    key: Callable[[T], Hashable | None],
    batch_size: Callable[[Hashable], int],
    process: Callable[[list[T]], None],
    hold: int,
) -> Iterator[T]:
    """Yield ``items`` in input order, calling ``process(batch)`` on batches of items with the same key first.

    ``key(item)`` is the batch key (an image's shape), or ``None`` for an item that needs no processing (a file
    that failed to decode); ``batch_size(key)`` is how many items of that key make a full batch. Every item is
    yielded after the batch holding it has been processed. When ``hold`` items wait, the batch
    holding the oldest one is processed partly full, so at most ``hold`` items are held back.
    """
    if hold < 1:
        raise ValueError(f"hold must be ≥ 1, got {hold}")
    waiting: deque[tuple[int, T]] = deque()  # not yet yielded, in input order
    keys: dict[int, Hashable] = {}  # position → key, for items still in an open batch
    open_batches: dict[Hashable, list[tuple[int, T]]] = {}

    def run(k: Hashable) -> None:
        batch = open_batches.pop(k)
        process([item for _, item in batch])
        for i, _ in batch:
            del keys[i]

    def ready() -> Iterator[T]:
        while waiting and waiting[0][0] not in keys:
            yield waiting.popleft()[1]

    for i, item in enumerate(items):
        waiting.append((i, item))
        k = key(item)
        if k is not None:
            keys[i] = k
            batch = open_batches.setdefault(k, [])
            batch.append((i, item))
            if len(batch) >= batch_size(k):
                run(k)
        while True:
            yield from ready()
            if len(waiting) < hold:
                break
            run(keys[waiting[0][0]])  # the oldest item waits for a batch that is not full: run it as it is
    while waiting:  # what is left, the batch of the oldest waiting item first
        yield from ready()
        if waiting:
            run(keys[waiting[0][0]])
