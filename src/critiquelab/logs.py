"""Logging set-up for a command or a cell's process: one rich handler, quiet third-party libraries.
The library itself only logs (`logging.getLogger(__name__)`); cli.py and the executors' cell
processes call `setup_logging` once."""

from __future__ import annotations

import logging
import os
import warnings

__all__ = ["HTTP_LOGGERS", "setup_logging"]

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
