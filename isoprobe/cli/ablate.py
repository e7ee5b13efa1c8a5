"""`isoprobe ablate CHECKPOINT --layers 1-5 --pathway cross`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isoprobe.cli.common import (OptionalCheckpointArgument, ModelOption, BatchOption, BootstrapOption, DataOption, DeviceOption,
                                 DonorOption, HeadsOption, LayersOption, SeedOption, SplitOption, console, run_analysis, source,
                                 user_errors, write_result)

NULL_MARK = "∅"


def ablate(
    checkpoint: OptionalCheckpointArgument = None,
    layers: LayersOption = "all",
    pathway: Annotated[str, typer.Option(help="uni, cross, relay, readout, cls, all or a directed pair like emg->acc; "
                                              "+ joins pathways into one condition (cross+relay); a comma makes one row each.")] = "cross",
    heads: HeadsOption = "all",
    intervention: Annotated[str, typer.Option(help="mask (logits to −inf), mean (pathway contribution → its training mean) "
                                                   "or resample (→ a donor window's).")] = "mask",
    mode: Annotated[str, typer.Option(help="single (each layer alone, then all together), cumulative or joint.")] = "single",
    window: Annotated[int, typer.Option(help="Knock out the K consecutive layers centred on each listed layer (clipped at "
                                             "the ends), as vision-language knockout studies do; 0: off.")] = 0,
    correct_only: Annotated[bool, typer.Option(help="Statistics over the windows the clean model classifies correctly "
                                                    "(the knockout studies' convention).")] = False,
    mask_self: Annotated[bool, typer.Option(help="Also mask self edges (a token attending to itself).")] = False,
    donor: DonorOption = "any",
    draws: Annotated[int, typer.Option(help="resample: donor draws; rows report their mean and the spread across draws.")] = 1,
    bootstrap: BootstrapOption = 1000,
    permutations: Annotated[int, typer.Option(help="Random sign patterns of the paired test when there are more than 16 segments.")] = 9999,
    seed: SeedOption = 0,
    model: ModelOption = None,
    data: DataOption = None,
    split: SplitOption = "test",
    device: DeviceOption = "cpu",
    batch_size: BatchOption = 512,
    approx: Annotated[bool, typer.Option(help="Attribution patching: estimate every mask condition's logit-margin change "
                                              "from one forward and one backward pass.")] = False,
    check: Annotated[int, typer.Option(help="--approx: conditions also run exactly to measure the agreement "
                                            "(spread over the grid; -1: all).")] = 12,
    out: Annotated[Optional[Path], typer.Option(help="Write ablation.csv, ablation.json and ablation.md here.")] = None,
) -> None:
    """IsoNet pathway interventions: one row per condition with accuracy drop, segment-level CI,
    paired test (Holm-corrected), logit margin and KL. Columns are defined in the README."""
    from rich.markup import escape

    from isoprobe.analysis import load_model_or_checkpoint
    from isoprobe.engine.ablate import AblationConfig, plan_ablation, run_ablation

    with user_errors(ablate):  # one message and exit 2 for a bad option, --approx or not
        config = AblationConfig(layers=layers, pathway=pathway, heads=heads, intervention=intervention, mode=mode,
                                window=window, correct_only=correct_only, mask_self=mask_self, donor=donor, draws=draws,
                                bootstrap=bootstrap, permutations=permutations, seed=seed, batch_size=batch_size)
    if approx:
        return _approximate(checkpoint, model, data, split, device, out, check, config)
    with user_errors(ablate):
        analysis = load_model_or_checkpoint(checkpoint, model, data, split, device, needs_attention=True)
        plan = plan_ablation(analysis.model, config)  # before the data are read
        result = run_analysis("intervening", run_ablation, analysis, config, device, plan=plan)
    table = result.table
    windows = analysis.windows
    # The title on its own line: as the table's title it would wrap at the table's width.
    kept = (f"the {table.windows.iloc[0]} correctly classified of {len(windows)} windows, in {table.segments.iloc[0]} of "
            f"{len(set(windows.segment))} segments" if correct_only else
            f"{len(windows)} windows in {table.segments.iloc[0]} segments, base accuracy {result.base_accuracy:.3f}")
    console.print(f"[bold]{escape(str(checkpoint or model))}[/] — {intervention} on the {split} split ({kept})")
    console.print(terminal_table(table, knockout=bool(window) or correct_only))
    notes = ["CI: 95%, stratified cluster bootstrap over segments (within each class); p: paired sign-flip test "
             "over segments, Holm-corrected across the rows; Δm: change of the mean true-class logit margin; KL(base ‖ intervened) in nats"]
    if window or correct_only:
        notes.append("Δp: mean relative change of the true class's probability, (p_new − p_base) / p_base"
                     + (f"; window: the {window} layers centred on the layer in `centre`" if window else ""))
    if (table.draws > 1).any():
        notes.append(f"acc. and ±: mean and standard deviation of the accuracy over {table.draws.max()} donor draws")
    caveat = table.caveat.iloc[0] if len(table) else ""
    if caveat:
        notes.append(f"[yellow]few segments — {caveat}[/]")
    if table.null_by_construction.any():
        notes.append(f"{NULL_MARK}: null by construction (it touches no edge the prediction can depend on); "
                     "not a finding, left out of the Holm correction")
    console.print("\n".join(notes), style="dim")
    write_result(ablate, result, out, analysis, seed, **source(checkpoint, model), split=split)


def terminal_table(table, knockout: bool = False):
    """One line per condition at 80 columns: heads and the draw spread appear only when they vary;
    the base accuracy, the same on every row, is in the title. knockout: the window's centre (where
    there is one) and the relative change of the true class's probability, in place of KL."""
    from rich.table import Table

    show_heads = (table.heads != "all").any()
    show_spread = (table.draws > 1).any()
    show_centre = knockout and table.window_centre.notna().any()
    shown = Table(box=None, pad_edge=False, collapse_padding=True)
    if show_centre:
        shown.add_column("centre", no_wrap=True)
    shown.add_column("layers", no_wrap=True)
    shown.add_column("pathway")  # the one column that may wrap (long combinations)
    if show_heads:
        shown.add_column("heads", no_wrap=True)
    shown.add_column("acc.", justify="right", no_wrap=True)
    if show_spread:
        shown.add_column("±", justify="right", no_wrap=True)
    for column in ("drop", "95% CI", "rel.", "p", "Δm", "Δp" if knockout else "KL"):
        shown.add_column(column, justify="right", no_wrap=True)
    for row in table.itertuples():
        pathway = f"{row.pathway} {NULL_MARK}" if row.null_by_construction else row.pathway
        p = "—" if row.null_by_construction else f"{row.p_holm:.2g}"
        last = f"{row.prob_change:+.1%}" if knockout else f"{row.kl:.3f}"
        shown.add_row(*((f"L{row.window_centre:.0f}",) if show_centre else ()), row.layers, pathway,
                      *((row.heads,) if show_heads else ()), f"{row.accuracy:.3f}",
                      *((f"{row.accuracy_draw_sd:.3f}",) if show_spread else ()), f"{row.drop:+.3f}",
                      f"[{row.drop_ci_low:+.3f}, {row.drop_ci_high:+.3f}]", f"{row.relative_drop:+.1%}", p,
                      f"{row.logit_margin_change:+.2f}", last)
    return shown


def _approximate(checkpoint: Optional[Path], model: Optional[str], data: Optional[Path], split: str, device: str, out: Optional[Path], check: int, config) -> None:
    """`ablate --approx`: the estimates, their agreement with the exact grid, and where they break down."""
    from rich.markup import escape
    from rich.progress import Progress
    from rich.table import Table

    from isoprobe.analysis import load_model_or_checkpoint
    from isoprobe.engine.ablate import plan_ablation
    from isoprobe.engine.attribution_patching import (
        SATURATING,
        run_attribution_patching,
    )

    with user_errors(ablate):
        analysis = load_model_or_checkpoint(checkpoint, model, data, split, device, needs_attention=True)
        plan = plan_ablation(analysis.model, config)  # before the data are read
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("estimating", total=None)
            result = run_attribution_patching(analysis.model, analysis.windows, config, check=check, device=device,
                                progress=lambda done, total: bar.update(task, completed=done, total=total), plan=plan)
    table, agreement = result.table, result.agreement
    console.print(f"[bold]{escape(str(checkpoint or model))}[/] — attribution patching on the {split} split "
                  f"({len(analysis.windows)} windows in {table.segments.iloc[0]} segments): estimated change of the "
                  "true-class logit margin when masking")
    shown = Table(box=None, pad_edge=False, collapse_padding=True)
    for column in ("layers", "pathway", "heads", "estimate", "95% CI", "exact", "regime"):
        shown.add_column(column, justify="left" if column in ("layers", "pathway", "heads", "regime") else "right",
                         no_wrap=column != "pathway")
    for row in table.itertuples():
        exact = "" if row.exact != row.exact else f"{row.exact:+.3f}"
        shown.add_row(row.layers, row.pathway, row.heads, f"{row.estimate:+.3f}", f"[{row.ci_low:+.3f}, {row.ci_high:+.3f}]",
                      exact, row.regime)
    console.print(shown)
    linear = agreement["linear"]
    console.print(f"agreement with the exact grid on {agreement['checked']} conditions: Spearman ρ {agreement['spearman']:.2f}, "
                  f"mean |error| {agreement['mean_abs_error']:.3f}, same sign {agreement['sign_agreement']:.0%}; "
                  f"on the {linear['checked']} linear ones: ρ {linear['spearman']:.2f}, mean |error| {linear['mean_abs_error']:.3f}")
    if (table.regime == "saturating").any():
        console.print(f"saturating: a row these conditions touch loses more than {SATURATING:.0%} of its attention "
                      "(e.g. masking cls empties CLS's own row); the first-order estimate can miss most of such an "
                      "effect: run them exactly (without --approx).", style="yellow")
    write_result(ablate, result, out, analysis, config.seed, **source(checkpoint, model), split=split, check=check,
                 agreement=agreement)
