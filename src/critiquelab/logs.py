"""What a run shows on the terminal: the logging set-up for a command or a cell's process (one rich
handler, quiet third-party libraries) and the stages' progress bars. The library itself only logs
(`logging.getLogger(__name__)`); cli.py and the executors' cell processes call `setup_logging` once."""

from __future__ import annotations

import logging
import os
import warnings

__all__ = ["HTTP_LOGGERS", "progress_bar", "setup_logging"]

HTTP_LOGGERS = ("httpx", "httpx2", "httpcore", "openai", "urllib3")  # one INFO line per request: debug level only


def setup_logging(verbose: bool = False) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(show_path=False, show_time=False)])
    _quiet_libraries(verbose)


def _quiet_libraries(verbose: bool = False) -> None:
    for name in HTTP_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*")
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def progress_bar(label: str, field: str | None = None, elapsed: bool = False, remaining: bool = True):
    """A rich progress bar (use it as a context manager): the bold `label` (it may name
    `{task.description}`), the bar, done/total, the task's `field` if given, the time elapsed and
    the time remaining."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn(f"{{task.fields[{field}]}}")] if field else []
    columns += [TimeElapsedColumn()] if elapsed else []
    columns += [TimeRemainingColumn()] if remaining else []
    return Progress(*columns)
