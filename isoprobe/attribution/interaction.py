"""`isoprobe interact`: two cooperative games per window, exact over all coalitions (DESIGN §5).

modality game  players: the model's modality groups (one input tensor each). A coalition's value is
               the model with every modality outside it replaced by a baseline (zero, the training
               mean window, or a donor window of another class). For two modalities the interaction
               index is f(both) − f(emg only) − f(acc only) + f(neither): zero for a model that adds
               per-modality evidence, non-zero where the decision needs the combination (synergy).
pathway game   players: each modality's `uni` edges (`m->m`), `cross`, `relay`, `readout`. A
               coalition's value is the model with every pathway outside it masked (IsoNet logit
               masking) in all shared layers; the grand coalition is the clean model. All 2^P
               coalitions of a batch run through one `InterventionEngine.run_grid` call. A player
               null by construction (`cross` on the mmt, relay and readout without a CLS token) is
               kept, so every model with the same modalities has the same players, and gets exactly
               0 (see `PathwayGame`).

Values are taken per window on two metrics: `accuracy` (1 when the argmax is the target class) and
`logit` (the target-class logit). From them (`isoprobe.attribution.shapley`): each player's Shapley
value, every pair's Shapley interaction index, v(all) and v(none), and as ratios of means (with
`cluster_ratio`) each Shapley value's and each interaction's share of the decision signal
v(all) − v(none). Shapley values sum to that signal window by window (efficiency), so the shares of
one game's players sum to 1; the question IsoNet asks — what share of the decision does cross-modal
attention carry? — is the `cross` player's `shapley share`.

The table is the attribution long format (`isoprobe.attribution.common.COLUMNS`) plus `metric`:
  method    "modality game" | "pathway game"
  site      "inputs" (modality game) | "all layers" (pathway game)
  part      a player ("emg"; "uni:emg", "cross", "relay", "readout"), a pair "a × b", or "all" / "none"
  quantity  "value" (parts all, none) | "shapley" | "shapley share" | "interaction" | "interaction share"
  metric    "accuracy" | "logit"
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterator, Literal, Sequence, get_args

import numpy as np
import pandas as pd
import torch

from isoprobe.attribution import common
from isoprobe.attribution.common import Target, baseline_inputs, mean_windows, summarise, target_classes
from isoprobe.attribution.shapley import MAX_PLAYERS, coalition_members, interaction_indices, player_pairs, shapley_values
from isoprobe.data.batches import window_batches
from isoprobe.data.pipeline import WindowSet
from isoprobe.engine.donors import donor_indices
from isoprobe.engine.grid import Condition, InterventionEngine
from isoprobe.models.pathways import JOIN
from isoprobe.engine.stats import Segments, cluster_ratio
from isoprobe.errors import ConfigError
from isoprobe.models.modes import evaluating
from isoprobe.options import Options, check_choices, check_counts, check_level
from isoprobe.results import TableResult

Baseline = Literal["zero", "mean", "donor"]
Game = Literal["modality", "pathway"]
GAMES: tuple[str, ...] = get_args(Game)
METRICS = ("accuracy", "logit")
COLUMNS = (*common.COLUMNS, "metric")
METHODS = {"modality": "modality game", "pathway": "pathway game"}
SITES = {"modality": "inputs", "pathway": "all layers"}
PAIR = " × "  # joins the two players of a pair in the `part` column


@dataclass(frozen=True)
class InteractConfig(Options):
    baseline: Baseline = "zero"  # what replaces an absent modality in the modality game
    target: Target = "true"  # whose class the metrics score: the true or the clean model's predicted class
    games: tuple[Game, ...] = GAMES  # also "modality,pathway" or a list: normalised to a tuple
    batch_size: int = 256
    bootstrap: int = 1000
    seed: int = 0  # donors (baseline donor) and bootstrap resamples
    level: float = 0.95

    def __post_init__(self) -> None:
        check_choices(self)
        # One game or several, from a dict or the command line: a string, a list or a tuple.
        games = tuple(p.strip() for p in self.games.split(",")) if isinstance(self.games, str) else self.games
        if not isinstance(games, (tuple, list)) or not games or any(g not in GAMES for g in games) \
                or len(set(games)) != len(games):
            raise ConfigError("games", self.games, f"one or more of {', '.join(GAMES)}, each once")
        object.__setattr__(self, "games", tuple(games))
        check_counts(self, {"batch_size": 1, "bootstrap": 0, "seed": 0})
        check_level(self)

    def to_dict(self) -> dict:
        return super().to_dict() | {"games": list(self.games)}


@dataclass(frozen=True)
class InteractionResult(TableResult):
    """One row per (game, metric, quantity, part) (COLUMNS) and the configuration that produced them."""

    kind: ClassVar[str] = "interaction"

    def estimate(self, game: str, quantity: str, part: str, metric: str = "accuracy") -> float:
        """One number of the table, e.g. estimate("pathway", "shapley share", "cross")."""
        t = self.table
        rows = t[(t.method == METHODS.get(game, game)) & (t.quantity == quantity) & (t.part == part) & (t.metric == metric)]
        if len(rows) != 1:
            raise KeyError(f"{len(rows)} rows for game {game!r}, quantity {quantity!r}, part {part!r}, metric {metric!r}")
        return float(rows.estimate.iloc[0])


@dataclass(frozen=True)
class Player:
    """A pathway-game player: its name in the table and the pathway it switches (engine syntax)."""

    name: str
    pathway: str


@dataclass
class GameValues:
    """A game's coalition values per window: players in bit order (player i is bit i of a
    coalition, see `isoprobe.attribution.shapley`); each metric [coalition, window]."""

    players: tuple[str, ...]
    values: dict[str, np.ndarray]  # metric -> [coalition, window] float64
    null: tuple[bool, ...] = ()  # [player]: null by construction (pathway game)


def pathway_players(engine: InterventionEngine) -> list[Player]:
    """Each modality's `uni` (the directed pair m->m), then cross, relay and readout."""
    players = [Player(f"uni:{m}", f"{m}->{m}") for m in engine.modality_names]
    players += [Player(name, name) for name in ("cross", "relay", "readout")]
    if len(players) > MAX_PLAYERS:
        raise ConfigError("games", "pathway", f"{len(players)} players: an exact game allows at most {MAX_PLAYERS}")
    return players


@dataclass(frozen=True)
class PathwayGame:
    """How to evaluate every coalition of the pathway game with one grid run.

    A player null by construction (its pathway has no edge the model lets exist in any shared layer,
    or none the prediction reads: `cross` on the mmt, relay and readout without a CLS token) cannot
    change the output, so its pathway is left out of every mask. Its Shapley value is then exactly
    0 rather than the float noise between the fused (clean) and the explicit (masked) attention path,
    and coalitions that differ only in null players share one condition."""

    players: tuple[Player, ...]
    null: tuple[bool, ...]  # [player]
    conditions: tuple[Condition, ...]  # the distinct mask conditions
    source: np.ndarray  # [coalition] -> index into (*conditions, clean)


def pathway_game(engine: InterventionEngine) -> PathwayGame:
    """The players and, per coalition, the condition masking the pathways of the (non-null) players
    outside it, joined with +, in every shared layer; the grand coalition is the clean model."""
    players = pathway_players(engine)
    layers = tuple(range(engine.n_layers))
    null = tuple(engine.null_by_construction(Condition(layers, p.pathway)) for p in players)
    conditions: dict[str, int] = {}
    source = []
    for row in coalition_members(len(players)):
        outside = [p.pathway for p, inside, is_null in zip(players, row, null) if not inside and not is_null]
        source.append(conditions.setdefault(JOIN.join(outside), len(conditions)) if outside else -1)
    n = len(conditions)
    return PathwayGame(tuple(players), null, tuple(Condition(layers, pathway) for pathway in conditions),
                       np.array([n if s == -1 else s for s in source]))


@torch.no_grad()
def pathway_coalition_logits(engine: InterventionEngine, inputs: Sequence[torch.Tensor], game: PathwayGame) -> torch.Tensor:
    """Logits of every coalition, [coalition, batch, class], from one grid run (inputs: one
    [batch, time, channel] tensor per modality)."""
    run = engine.run_grid(inputs, game.conditions)
    stacked = torch.stack([*run.logits, run.clean])  # [condition + clean, batch, class]
    return stacked[torch.as_tensor(game.source, device=stacked.device)]


@torch.no_grad()
def modality_coalition_logits(model: torch.nn.Module, inputs: Sequence[torch.Tensor],
                              baselines: Sequence[torch.Tensor]) -> torch.Tensor:
    """Logits of every coalition of modalities, [coalition, batch, class]: modality m is the window's
    own input where bit m of the coalition is set, else its baseline (both one [batch, time, channel]
    tensor per modality, in `model.modality_names` order). One forward per coalition, so memory
    stays that of one batch."""
    members = coalition_members(len(inputs))
    with evaluating(model):
        return torch.stack([model(*(x if inside else b for x, b, inside in zip(inputs, baselines, row))) for row in members])


def metric_values(logits: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-window metrics of coalition logits [coalition, batch, class] against target [batch]:
    accuracy (argmax == target) and the target-class logit, each [coalition, batch] float64."""
    logits = logits.detach().double().cpu()
    target = target.detach().cpu().long()
    index = target[None, :, None].expand(len(logits), -1, 1)
    return {"accuracy": (logits.argmax(-1) == target).double().numpy(),
            "logit": logits.gather(-1, index).squeeze(-1).numpy()}


def _donors(windows: WindowSet, seed: int) -> np.ndarray:
    """Each window's donor of another class, fixed by the seed and the window keys alone."""
    if len(windows) < 2:
        raise ConfigError("baseline", "donor", "needs at least two windows: a window cannot be its own donor")
    try:
        return donor_indices(len(windows), seed, 0, windows.y, windows.start, rule="other-class")
    except ConfigError as error:  # the donor module names its own option; here it is the baseline
        raise ConfigError("baseline", "donor", error.allowed) from None


def _modality_baselines(config: InteractConfig, windows: WindowSet, reference: WindowSet | None, names: tuple[str, ...],
                        device: str | torch.device) -> tuple[list[torch.Tensor] | None, Iterator]:
    """What the modality game's baseline needs: the reference mean windows (baseline mean) and, per
    batch, the donor inputs (baseline donor: donors drawn over the whole set, gathered batch by
    batch beside the windows they serve; None per batch otherwise)."""
    if config.baseline == "zero":
        return None, itertools.repeat(None)
    if config.baseline == "mean":
        if reference is None:
            raise ConfigError("reference", None, "the mean baseline needs reference (training) windows")
        return mean_windows(reference, names), itertools.repeat(None)
    if config.baseline == "donor":
        return None, window_batches(windows.x, names, config.batch_size, device, index=_donors(windows, config.seed))
    raise ConfigError("baseline", config.baseline, "choose zero, mean or donor")


def game_values(model: torch.nn.Module, windows: WindowSet, config: InteractConfig, reference: WindowSet | None = None,
                device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None) -> dict[str, GameValues]:
    """Every configured game's coalition values on every window, batch by batch (the batch size
    changes no number beyond float rounding): game -> GameValues."""
    if not len(windows):
        raise ConfigError("windows", 0, "no windows to evaluate")
    model = model.to(device)
    names = tuple(model.modality_names)
    players: dict[str, tuple[str, ...]] = {}
    null: dict[str, tuple[bool, ...]] = {}
    means, donors = None, itertools.repeat(None)
    if "modality" in config.games:
        if len(names) > MAX_PLAYERS:
            raise ConfigError("games", "modality", f"{len(names)} modalities: an exact game allows at most {MAX_PLAYERS}")
        players["modality"] = names
        means, donors = _modality_baselines(config, windows, reference, names, device)
    if "pathway" in config.games:
        engine = InterventionEngine(model)  # the model's token groups and modality names
        pathways = pathway_game(engine)
        players["pathway"] = tuple(p.name for p in pathways.players)
        null["pathway"] = pathways.null
    target = torch.as_tensor(target_classes(model, windows, config.target, config.batch_size, device))

    parts: dict[str, list[dict[str, np.ndarray]]] = {game: [] for game in config.games}
    n_batches = math.ceil(len(windows) / config.batch_size)
    batches = zip(window_batches(windows.x, names, config.batch_size, device), donors)
    for index, (inputs, donor_inputs) in enumerate(batches):
        first = index * config.batch_size
        batch_target = target[first : first + len(inputs[0])]
        for game in config.games:
            if game == "modality":
                baselines = donor_inputs if config.baseline == "donor" else baseline_inputs(config.baseline, inputs, means)
                logits = modality_coalition_logits(model, inputs, baselines)
            elif game == "pathway":
                logits = pathway_coalition_logits(engine, inputs, pathways)
            else:
                raise ConfigError("games", game, f"choose from {', '.join(GAMES)}")
            parts[game].append(metric_values(logits, batch_target))
        if progress is not None:
            progress(index + 1, n_batches)
    return {game: GameValues(players[game], {m: np.concatenate([p[m] for p in per_batch], axis=1) for m in METRICS},
                             null.get(game, ()))
            for game, per_batch in parts.items()}


def game_table(game: str, values: GameValues, segments: Segments, config: InteractConfig) -> pd.DataFrame:
    """The rows of one game (COLUMNS): per metric v(all), v(none), Shapley values and their shares,
    pairwise interaction indices and their shares."""
    players, n = values.players, len(values.players)
    pairs = [f"{players[i]}{PAIR}{players[j]}" for i, j in player_pairs(n)]
    n_segments = segments.n_segments
    frames = []
    for metric in METRICS:
        v = values.values[metric]  # [coalition, window]
        phi, pair_index = shapley_values(v, n), interaction_indices(v, n)  # [player, window], [pair, window]
        signal = v[-1] - v[0]  # [window]: v(all) − v(none), what the Shapley values share out
        keys = ([{"part": "all", "quantity": "value"}, {"part": "none", "quantity": "value"}]
                + [{"part": p, "quantity": "shapley"} for p in players]
                + [{"part": p, "quantity": "interaction"} for p in pairs])
        columns = np.concatenate([v[[-1, 0]], phi, pair_index]).T  # [window, row]
        means = summarise(keys, columns, segments, config.bootstrap, config.seed, config.level)
        # Shares are ratios of means (Σ φ_i / Σ signal), not means of per-window ratios: a window
        # whose decision no coalition changes has no signal to share.
        # (+ 0.0 turns the −0.0 of a null player over a negative signal into 0.0)
        shares = [{"part": part, "quantity": f"{quantity} share",
                   **{key: x + 0.0 for key, x in zip(("estimate", "ci_low", "ci_high"),
                      cluster_ratio(row, signal, segments, config.bootstrap, config.seed, config.level))}}
                  for quantity, labels, rows in (("shapley", players, phi), ("interaction", pairs, pair_index))
                  for part, row in zip(labels, rows)]
        frame = pd.concat([means, pd.DataFrame(shares, columns=["part", "quantity", "estimate", "ci_low", "ci_high"])],
                          ignore_index=True)
        frames.append(frame.assign(metric=metric))
    table = pd.concat(frames, ignore_index=True)
    table = table.assign(method=METHODS[game], site=SITES[game], windows=len(segments.codes), segments=n_segments)
    return table[list(COLUMNS)]


def interact(model: torch.nn.Module, windows: WindowSet, config: InteractConfig, reference: WindowSet | None = None,
             device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None) -> InteractionResult:
    """The configured games on `windows` (labels `y`, segments, `start` keys), summarised with
    cluster-bootstrap CIs over segments; `reference` (the training split) serves the mean baseline.
    See `game_values` for the evaluation and the module docstring for the table."""
    games = game_values(model, windows, config, reference, device, progress)
    table = pd.concat([game_table(game, games[game], Segments.of_windows(windows), config) for game in config.games], ignore_index=True)
    return InteractionResult(config, table)
