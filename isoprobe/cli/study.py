"""`isoprobe study RECIPE --out DIR`: a whole study from one recipe, resumable, ending in a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isoprobe.cli.common import console, user_errors


def study(
    recipe: Annotated[Path, typer.Argument(help="A study recipe (TOML), e.g. analyses/quick.toml.")],
    out: Annotated[Path, typer.Option(help="Study folder: data, runs, tables and report/ go here; rerun to resume.")],
    data: Annotated[Optional[list[str]], typer.Option(help="A data folder replacing the recipe's data (real DB2 or HD-sEMG "
                                                            "files), or NAME=FOLDER for a recipe's [[data]] table NAME "
                                                            "(repeat for several).")] = None,
    executor: Annotated[str, typer.Option(help="local (worker processes on this machine) or ray.")] = "local",
    jobs: Annotated[int, typer.Option(help="local: jobs run at once, each in its own process with the recipe's "
                                           "threads (0: one per CPU core).")] = 0,
    address: Annotated[Optional[str], typer.Option(help="ray: address of an existing cluster (default: a local Ray "
                                                         "instance). Its workers must see OUT and the data at the same paths.")] = None,
    report: Annotated[bool, typer.Option(help="Write the report at the end.")] = True,
    trust_code: Annotated[bool, typer.Option(help="Import the functions that the recipe's models tables name "
                                                  "(model = \"package.module:function\"): importing runs their code, "
                                                  "so a recipe naming code is refused without this.")] = False,
) -> None:
    """Train every model of the recipe (subjects × architectures × modality configurations × seeds),
    evaluate, intervene, get second opinions and check shift; collect the tables and write the report.
    Finished steps are kept: a rerun does only what is missing."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from isoprobe.study.recipe import load_recipe
    from isoprobe.study.runner import run_study

    with user_errors(study):
        loaded = load_recipe(recipe, _data_folders(data), trust_code=trust_code)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("jobs", total=None)

            def progress(done: int, total: int, last: str) -> None:
                bar.update(task, completed=done, total=total, description=f"jobs ({last})" if last else "jobs")
                if last and not console.is_terminal:  # a CI log: the bar draws nothing there, a line per job does
                    console.print(f"job {done}/{total} done: {last}", highlight=False)

            result = run_study(loaded, out, executor=executor, jobs=jobs, address=address, report=report,
                               progress=progress)
    steps = ", ".join(f"{count} {status}" for status, count in sorted(result.steps.items())) or "nothing to do"
    console.print(f"{loaded.title}: {result.jobs} jobs; steps: {steps}; tables in {out / 'tables'}")
    if result.report is not None:
        console.print(f"report: [bold]{result.report}[/]")


def _data_folders(values: list[str] | None) -> Path | dict[str, Path] | None:
    """--data FOLDER (one) or --data NAME=FOLDER (any number)."""
    from isoprobe.errors import ConfigError

    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return Path(values[0])
    if not all("=" in value for value in values):
        raise ConfigError("data", values, "give one FOLDER, or NAME=FOLDER for each [[data]] table")
    return {name: Path(folder) for name, folder in (value.split("=", 1) for value in values)}
