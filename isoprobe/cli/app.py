"""Entry point: `isoprobe <group> <command>`. Heavy libraries are imported inside commands so that
`isoprobe --help` answers quickly."""

from __future__ import annotations

from typing import Annotated

import typer

from isoprobe import __version__
from isoprobe.cli import (ablate, attribute, compare, data, emap, interact, pid, report, sanity, shift, study, sweep,
                          train)
from isoprobe.cli.common import configure_logging

app = typer.Typer(
    name="isoprobe",
    help="Causal interpretability for multimodal biosignal transformers (IsoNet reproduction and stress tests).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
data.app.command(name="pid")(pid.data_pid_command)
app.add_typer(data.app, name="data")
app.command(name="train")(train.train)
app.command(name="eval")(train.evaluate)
app.command(name="ablate")(ablate.ablate)
app.command(name="attribute")(attribute.attribute)
app.command(name="interact")(interact.interact)
app.command(name="compare")(compare.compare)
app.command(name="shift")(shift.shift)
app.command(name="emap")(emap.emap)
app.command(name="sanity")(sanity.sanity)
app.command(name="pid")(pid.pid)
app.command(name="sweep-dropout")(sweep.sweep_dropout)
app.command(name="report")(report.report)
app.command(name="study")(study.study)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"isoprobe {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (-v info, -vv debug).")] = 0,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    configure_logging(verbose)


def main() -> None:
    app()
