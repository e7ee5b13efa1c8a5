"""What every command shares: error reporting without tracebacks, logging set-up, the consoles."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console
from rich.markup import escape

from isoprobe.errors import IsoprobeError

console = Console()
err_console = Console(stderr=True)

EXIT_USER_ERROR = 2


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn an IsoprobeError into one red line on stderr and exit code 2."""
    try:
        yield
    except IsoprobeError as exc:
        # escape: messages quote user input (paths, `emg[0:6]`) that rich would otherwise read as markup
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR) from None
    except OSError as exc:  # disk full, permission denied: say which file, without a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(f"[bold red]error:[/] {escape(where + (exc.strerror or str(exc)))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR) from None


def configure_logging(verbosity: int) -> None:
    from rich.logging import RichHandler

    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = RichHandler(console=err_console, show_time=False, show_path=False)
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)
