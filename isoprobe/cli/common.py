"""What every command shares: error reporting without tracebacks, logging set-up, the consoles."""

from __future__ import annotations

import inspect
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from typer.models import OptionInfo

from isoprobe.errors import ConfigError, IsoprobeError

# Options every analysis command shares (typer derives each flag from the parameter's name).
CheckpointArgument = Annotated[Path, typer.Argument(help="An isoprobe checkpoint.pt.")]
AttentionCheckpointArgument = Annotated[Path, typer.Argument(help="An isoprobe checkpoint.pt (mmt or hierarchical).")]
# The commands that also run on a model isoprobe did not build take a checkpoint or --model.
OptionalCheckpointArgument = Annotated[Optional[Path], typer.Argument(
    help="An isoprobe checkpoint.pt (mmt or hierarchical), or none with --model.", show_default=False)]
ModelOption = Annotated[Optional[str], typer.Option(
    help="Your own model instead of a checkpoint: package.module:function, a function (given the prepared data, if "
         "it takes an argument) that returns isoprobe.hook(model, layout). Needs --data. Importing it runs its code.")]
DataOption = Annotated[Optional[Path], typer.Option(help="Data folder (default: the one recorded in the checkpoint).")]
SplitOption = Annotated[str, typer.Option(help="Split to evaluate: train, validation or test (default: the checkpoint's test repetitions).")]
DeviceOption = Annotated[str, typer.Option(help="cpu or cuda.")]
BootstrapOption = Annotated[int, typer.Option(help="Cluster-bootstrap resamples (over segments) for the confidence intervals.")]
BatchOption = Annotated[int, typer.Option(help="Windows per batch (no number depends on it).")]
SeedOption = Annotated[int, typer.Option(help="Seed of everything random (donors, subsamples, permutations, bootstrap): "
                                              "the numbers depend on it alone.")]
# The grid of conditions, as ablate and shift take it.
LayersOption = Annotated[str, typer.Option(help="Shared layers, 1-based as the paper counts: 1-5, 2,4 or all.")]
HeadsOption = Annotated[str, typer.Option(help="all, or head numbers (0-based) like 0,2.")]
DonorOption = Annotated[str, typer.Option(help="resample: any (a random derangement of the windows) or other-class "
                                               "(the donor always has another label).")]

console = Console()
err_console = Console(stderr=True)

EXIT_USER_ERROR = 2


@contextmanager
def user_errors(command: Callable | None = None) -> Iterator[None]:
    """Turn an IsoprobeError into one red line on stderr and exit code 2. With the running `command`,
    an error naming a configuration field that one of its options sets names the flag instead."""
    try:
        yield
    except ConfigError as exc:
        flag = _option_flags(command).get(str(exc.option)) if command is not None else None
        _fail(str(exc.naming(flag) if flag else exc))
    except IsoprobeError as exc:
        _fail(str(exc))
    except OSError as exc:  # disk full, permission denied: say which file, without a traceback
        _fail((f"{exc.filename}: " if exc.filename else "") + (exc.strerror or str(exc)))


def _fail(message: str) -> None:
    # escape: messages quote user input (paths, `emg[0:6]`) that rich would otherwise read as markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USER_ERROR) from None


def _option_flags(command: Callable) -> dict[str, str]:
    """{parameter name: --flag} for the typer options of a command function (typer derives each flag
    from its parameter's name)."""
    flags = {}
    for name, parameter in inspect.signature(command, eval_str=True).parameters.items():
        if any(isinstance(m, OptionInfo) for m in getattr(parameter.annotation, "__metadata__", ())):
            flags[name] = "--" + name.replace("_", "-")
    return flags


def run_analysis(label: str, run: Callable, analysis, config, device: str, **options):
    """`run(model, windows, config, reference=…, device=…, progress=…, **options)` on the loaded analysis,
    under a transient progress bar named `label` (the bar draws nothing when output is not a terminal)."""
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)
        return run(analysis.model, analysis.windows, config, reference=analysis.reference, device=device,
                   progress=lambda done, total: bar.update(task, completed=done, total=total), **options)


def write_result(command: Callable, result, out: Path | None, analysis=None, seed: int | None = None, **meta) -> None:
    """Nothing without --out; else `result.write(out)` (its configuration, `meta` and the provenance of
    this command in each table's JSON) under one error handler, and one line saying where."""
    if out is None:
        return
    with user_errors(command):
        paths = result.write(out, {**meta, "provenance": made_by(analysis, **({"seeds": {"seed": seed}} if seed is not None
                                                                               else {}))})
    console.print(f"written to {', '.join(str(p) for p in paths)} (and .json, .md beside each)")


def source(checkpoint: Path | None, model: str | None) -> dict:
    """What a table's meta names as the analysed model: the checkpoint, or the --model function."""
    return {"checkpoint": str(checkpoint)} if model is None else {"model": model}


def made_by(analysis=None, **sources) -> dict:
    """The provenance of an output of the running command (isoprobe.provenance), for a table's meta:
    its argv and, with an `Analysis`, the checkpoint, data and device it read; `sources` adds or
    overrides fields (seeds, recipe)."""
    import sys

    from isoprobe.provenance import provenance

    if analysis is not None:
        sources = {"checkpoint": analysis.path, "data": analysis.data, "device": analysis.device, **sources}
    return provenance(command=sys.argv, **sources)


def configure_logging(verbosity: int) -> None:
    from rich.logging import RichHandler

    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = RichHandler(console=err_console, show_time=False, show_path=False)
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)
