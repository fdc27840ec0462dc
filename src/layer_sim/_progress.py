"""The one progress-bar convention: a rich bar on stderr, shown only when stderr is a terminal.

``progress=None`` (the default everywhere) means "only on a terminal"; ``True``/``False`` force it.
Long-running library functions take ``progress`` and use :func:`progress_bar`; nothing else in
the package imports rich's progress classes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

__all__ = ["progress_bar", "track", "enabled"]

T = TypeVar("T")


def enabled(progress: bool | None) -> bool:
    """Whether to draw: ``progress`` if given, else whether stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else bool(progress)


@contextmanager
def progress_bar(progress: bool | None, total: int | None, description: str) -> Iterator[Callable[[int], None]]:
    """Context manager yielding ``advance(k=1)``; a transient bar when :func:`enabled`, else a no-op."""
    if not enabled(progress):
        yield lambda k=1: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   transient=True, console=Console(stderr=True))  # fmt: skip
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda k=1: bar.advance(task, k)


def track(items: Iterable[T], progress: bool | None, description: str) -> Iterator[T]:
    """Iterate ``items`` with a bar (see :func:`progress_bar`)."""
    items = list(items)
    with progress_bar(progress, len(items), description) as advance:
        for item in items:
            yield item
            advance()
