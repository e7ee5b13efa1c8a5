"""`isoprobe train` and `isoprobe eval`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from isoprobe.cli.common import CheckpointArgument, console, made_by, user_errors


def train(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Run folder: checkpoint.pt, last.pt and metrics.jsonl go here.")],
    data: Annotated[Optional[Path], typer.Option(help="Data folder; without it, synthetic data (see --preset) are generated and cached.")] = None,
    model_config: Annotated[Optional[Path], typer.Option(help="A model configuration (models/*.toml): its values replace the "
                                                         "defaults of the options below; options given on the command "
                                                         "line override the file.")] = None,
    dataset: Annotated[str, typer.Option(help="ninapro-db2 or hdsemg65.")] = "ninapro-db2",
    subject: Annotated[int, typer.Option(help="Subject number.")] = 1,
    arch: Annotated[str, typer.Option(help="mlp, mmt or hierarchical.")] = "hierarchical",
    modalities: Annotated[Optional[str], typer.Option(help="Modality configuration, e.g. emg,acc or emg[0:6],emg[6:12] (default: both modalities).")] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 40,
    batch_size: Annotated[int, typer.Option(help="Windows per batch.")] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warm-up then cosine).")] = 1e-3,
    head_switch: Annotated[float, typer.Option(help="Fraction of training by which λ reaches 1 (only the CLS head trains after).")] = 0.375,
    seed: Annotated[int, typer.Option(help="Seed for initialisation, shuffling and dropout.")] = 0,
    gain_jitter: Annotated[float, typer.Option(help="Augmentation: per-window, per-channel log-normal gain σ (0 = off).")] = 0.3,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    bf16: Annotated[bool, typer.Option(help="bf16 autocast on CUDA.")] = True,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.pt.")] = False,
    preset: Annotated[str, typer.Option(help="Synthetic data only: redundant, emg-only, acc-only, synergy, mixed.")] = "redundant",
    synergy_fraction: Annotated[Optional[float], typer.Option(help="Synthetic data only, with --preset mixed.")] = None,
    window_ms: Annotated[float, typer.Option(help="Window length in ms.")] = 200.0,
    stride_ms: Annotated[float, typer.Option(help="Window stride in ms.")] = 100.0,
    patch: Annotated[str, typer.Option(help="Tokens: time, channel or grid patches.")] = "time",
    patch_ms: Annotated[float, typer.Option(help="Time-patch length in ms.")] = 20.0,
    d_model: Annotated[int, typer.Option(help="Model width.")] = 64,
    n_layers: Annotated[Optional[int], typer.Option(help="Layers (hierarchical: shared stage, default 5; mmt: default 3).")] = None,
    features: Annotated[str, typer.Option(help="mlp only: patches or classic (RMS, MAV, WL, ZC, SSC).")] = "patches",
    pathway_dropout: Annotated[Optional[str], typer.Option(help="Attention dropout on pathways of the shared layers, e.g. "
                                                                "cross:0.3 or cross:0.3,cls->acc:1 (rate 1: the pathway is removed "
                                                                "from the model).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train one architecture on one subject; the best validation epoch is saved as OUT/checkpoint.pt."""
    from isoprobe.errors import ConfigError
    from isoprobe.models.config import has_attention
    from isoprobe.training.dropout import parse_pathway_dropout
    from isoprobe.training.runspec import default_model_spec, load_model_config
    from isoprobe.training.run import fit, synthetic_root

    with user_errors(train):
        # Without a file every option applies; with one, only those given on the command line override it.
        base = load_model_config(model_config) if model_config is not None else None
        chosen = {name: value for name, value in dict(
            dataset=dataset, arch=arch, modalities=modalities, epochs=epochs, batch_size=batch_size, lr=lr,
            head_switch=head_switch, gain_jitter=gain_jitter, window_ms=window_ms, stride_ms=stride_ms, patch=patch,
            patch_ms=patch_ms, d_model=d_model, n_layers=n_layers, features=features).items()
            if value is not None and (base is None or ctx.get_parameter_source(name).name != "DEFAULT")}
        arch = chosen.get("arch", base.arch if base is not None else arch)
        chosen.pop("n_layers" if arch == "mlp" else "features", None)  # --n-layers: transformers; --features: mlp
        spec = (base or default_model_spec(dataset, arch)).with_overrides(**chosen)  # fails fast, before data are read
        dropout = parse_pathway_dropout(pathway_dropout)
        if dropout and not has_attention(arch):
            raise ConfigError("pathway_dropout", pathway_dropout, "the multimodal MLP has no attention; use mmt or hierarchical")
        train_config = spec.train_config(seed=seed, device=device, bf16=bf16)
        token, options = spec.token, spec.model_options()
        root = data
        if root is None:
            root = synthetic_root(spec.dataset, preset, seed=0, synergy_fraction=synergy_fraction)
            console.print(f"no --data: training on synthetic {spec.dataset} data ({preset}) in {root}")
        data_config = spec.data_config(root, subject)
        result = fit(data_config, arch, train_config, out, token, options, resume=resume, progress=progress,
                     pathway_dropout=dropout, command=sys.argv)
    test = result.test
    console.print(f"best validation accuracy {result.checkpoint.metrics['validation_accuracy']:.4f} at epoch {result.best_epoch}; "
                  f"test accuracy [bold]{test['accuracy']:.4f}[/], balanced {test['balanced_accuracy']:.4f} (n = {test['n']})")
    console.print(f"checkpoint: {out / 'checkpoint.pt'}")


def evaluate(
    checkpoint: CheckpointArgument,
    data: Annotated[Optional[Path], typer.Option(help="Data folder (default: the one recorded in the checkpoint).")] = None,
    split: Annotated[str, typer.Option(help="train, validation or test.")] = "test",
    out: Annotated[Optional[Path], typer.Option(help="Write metrics.json, per_class.csv, confusion.csv and confusion.png here.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Windows per batch.")] = 1024,
) -> None:
    """Accuracy, balanced accuracy, per-class accuracy and the confusion matrix of a checkpoint."""
    from rich.table import Table

    from isoprobe.analysis import evaluate_checkpoint

    with user_errors(evaluate):
        analysis, result = evaluate_checkpoint(checkpoint, data, split, device, batch_size)
        loaded = analysis.checkpoint
        names = loaded.class_names
        console.print(f"[bold]{checkpoint}[/] ({loaded.model_config.arch}, {', '.join(g.name for g in loaded.model_config.groups)}) "
                      f"on the {split} split: accuracy [bold]{result.accuracy:.4f}[/], balanced accuracy {result.balanced_accuracy:.4f}, n = {result.n}")
        table = Table("class", "accuracy", "n", *names, title="confusion (rows: true, columns: predicted)", box=None)
        for index, name in enumerate(names):
            accuracy = result.per_class_accuracy[index]
            table.add_row(name, "—" if accuracy != accuracy else f"{accuracy:.3f}", str(result.confusion[index].sum()),
                          *(str(c) for c in result.confusion[index]))
        console.print(table)
        if out is not None:
            from isoprobe.reports.tables import write_evaluation

            write_evaluation(out, result, names, title=f"{loaded.model_config.arch} — {split}",
                             meta={"checkpoint": str(checkpoint), "split": split, "provenance": made_by(analysis)})
            console.print(f"written to {out}")
