"""Partial information decomposition (PID) of the labels, or of a model's predictions, over the two
modalities (DESIGN §5): how many bits about Y the sEMG and the second modality carry redundantly,
each uniquely, and only together (synergy). After Liang et al. (NeurIPS 2023, "Quantifying & Modeling
Multimodal Interactions"), whose CVX estimator this follows.

The decomposition (`decompose`): the BROJA definition (Bertschinger et al. 2014, "Quantifying unique
information"). Of the joints Q with P's (x1, y) and (x2, y) marginals, Q* is the one that minimises
I_Q(X1,X2;Y); then, in bits,
    U1 = I_Q*(X1;Y|X2),  U2 = I_Q*(X2;Y|X1),  R = I(X1;Y) − U1,  S = I_P(X1,X2;Y) − I_Q*(X1,X2;Y),
so that R + U1 = I(X1;Y), R + U2 = I(X2;Y) and R + U1 + U2 + S = I(X1,X2;Y). Since H(Y) is fixed by
the constraints, minimising I_Q(X1,X2;Y) is minimising −H_Q(Y|X1,X2) = Σ q(x1,x2,y) log q(x1,x2,y)/q(x1,x2),
a sum of relative entropies (jointly convex): an exponential-cone program, solved with cvxpy and
CLARABEL (SCS as the fallback). Only entries with p(x1,y) > 0 and p(x2,y) > 0 can carry Q's mass,
so the program has one variable per such entry (outcomes of zero marginal drop out). The parts are
then computed from Q* in float64 (R as the co-information I_Q*(X1;Y) − I_Q*(X1;Y|X2), which is
symmetric), so the sum identity holds to rounding and the other two to the solver's feasibility
(Q*'s marginals are P's within about 1e-10 bits). The solver stops within about 1e-10 bits of the optimum, so a part that is 0 in
exact arithmetic can come out as −1e-10: values in (−CLIP_BITS, 0) are set to 0; a part further
below 0 is a solver failure, kept as it is and logged.

The estimate from windows (`data_pid`, `model_pid`), for each K in `PIDConfig.ks`:
1. features of each window, per modality. sEMG (a group of the data set's sEMG source: emg, hdsemg)
   carries its information in its amplitude and spectrum, so its features are, per channel, the
   log-RMS of the window (mean removed) and the log power in BANDS log-spaced bands of its rFFT
   (the classic time- and frequency-domain EMG features); its mean level is electrode offset and
   noise. The other modalities (accelerometer, force) are slow, DC-coupled signals whose
   information is their level (posture, pressure), so their features are the per-channel means.
   On the planted presets (DB2 layout, 8 gestures) this split came nearest the planted parts at
   K = 8 of the sets tried (mean and log-RMS for every modality, with or without band powers,
   standardised or not; log-RMS and band powers for every modality): the sEMG mean level and the
   accelerometers' fluctuation add segment-specific noise that k-means splits codes on;
2. each feature standardised, then projected on the leading `components` principal axes (SVD);
3. k-means (`scipy.cluster.vq.kmeans2`, k-means++ seeded by the seed alone) into K codes per
   modality; every window gets the code of its nearest centroid;
4. the plug-in joint of (code1, code2, target) over the evaluated windows, decomposed. The target is
   the label (`data_pid`) or the model's argmax prediction (`model_pid`).
Steps 1–3 are fitted on `fit`, the training split, and applied to the evaluated windows: the codes are
then a fixed function chosen without the evaluated windows (as a model is), the same for the data and
for every model of that split, and the evaluated segments are not the ones the clusters were fitted
to, which would otherwise let codes index segments (and with them the label). Without `fit`, they are
fitted on the evaluated windows themselves. The fit windows enter in the order of their keys
(`start`), so neither their order nor the evaluated windows' changes a code.

What the numbers are: plug-in estimates over k-means codes, in bits, biased upward (a finite sample
of K·K·classes cells shows dependence that is not there), more so as K grows; and limited by what K
codes keep of each modality. So they are read against two references at each K:
- the floor: the same estimate with the target permuted across windows (B permutations drawn by the
  seed in the order of the window keys), its mean and 95th percentile per part: what the plug-in
  bias alone gives for these codes and this many windows. Windows of one segment overlap and share
  their codes, so the effective sample is smaller than the window count and the true bias can exceed
  this floor, most for large K and few segments;
- the CI: a stratified cluster bootstrap over segments (`isoprobe.engine.stats.Segments`, the Rao–Wu
  weights every interval of the project uses), the codes kept fixed and the joint re-weighted; the
  interval is the project's estimate ± t × sd (`bootstrap_interval`), clipped to [0, H(Y)]. A resample
  keeps n − 1 of a class's n segments: with DB2's two test repetitions, one, which loses what needs
  both (the two variants of a synergy pair), so a part whose resamples centre further from the estimate
  than they spread gets no interval (NaN), and says so in `caveat`.
Every joint (the evaluated one, each resample, each permutation) is solved over its own support.

expected_bits: the parts the synthetic sidecar plants (`expected_pid`), where it pins them down.

The table has one row per (K, part):
  target          labels | predictions
  k               codes per modality
  part            redundancy, unique_<modality 1>, unique_<modality 2>, synergy, mutual_information
  bits            the plug-in estimate
  fraction        bits / I(X1,X2;Y) at that K
  ci_low, ci_high the segment-bootstrap interval (NaN without resamples)
  fraction_ci_low, fraction_ci_high   the same for the fraction (each resample's own ratio)
  floor_mean, floor95   the permutation floor (NaN without permutations)
  expected_bits   the planted value (NaN when unknown)
  windows, segments     what the estimate rests on
  caveat          few segments for the CI, more cells than windows, a part whose resamples left no CI
"""

from __future__ import annotations

import itertools
import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar, Literal

import numpy as np
import pandas as pd

from isoprobe.data.datasets import DATASETS
from isoprobe.data.pipeline import WindowSet
from isoprobe.engine.stats import COVERED_SEGMENTS, Segments, bootstrap_interval
from isoprobe.errors import ConfigError
from isoprobe.options import Options, check_choices, check_counts, check_level
from isoprobe.results import TableResult

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Target = Literal["labels", "predictions"]
JOINT_TOLERANCE = 1e-6  # how far from 1 the entries of a joint may sum (float sums of counts)
CLIP_BITS = 1e-9  # parts in (−CLIP_BITS, 0) are solver tolerance: set to 0
# CLARABEL at 1e-9 lands about 1e-10 bits from the optimum; its defaults (1e-8) and SCS are fallbacks.
SOLVERS = (("CLARABEL", dict(tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9)), ("CLARABEL", {}),
           ("SCS", dict(eps_abs=1e-8, eps_rel=1e-8, max_iters=20_000)))
BANDS = 4  # log-spaced rFFT bands per sEMG channel
KMEANS_ITERATIONS = 25
_KMEANS_STREAM, _PERMUTATION_STREAM = 0x9C0DE, 0x9F1008  # seed streams: codes and the floor draw apart
SEMG_SOURCES = frozenset(spec.semg for spec in DATASETS.values())
COLUMNS = ("target", "k", "part", "bits", "fraction", "ci_low", "ci_high", "fraction_ci_low", "fraction_ci_high",
           "floor_mean", "floor95", "expected_bits", "windows", "segments", "caveat")


# --- the decomposition of a joint distribution --------------------------------------------------------

@dataclass(frozen=True)
class PID:
    """The BROJA parts of I(X1,X2;Y), in bits: unique = (U1, U2)."""

    redundancy: float
    unique: tuple[float, float]
    synergy: float
    mutual_information: float

    def to_dict(self) -> dict:
        return {"redundancy": self.redundancy, "unique": list(self.unique), "synergy": self.synergy,
                "mutual_information": self.mutual_information}

    def values(self) -> tuple[float, float, float, float, float]:
        """(R, U1, U2, S, I): the order of the table's parts."""
        return (self.redundancy, *self.unique, self.synergy, self.mutual_information)


def decompose(joint: np.ndarray) -> PID:
    """The BROJA decomposition of P[x1, x2, y], a non-negative array summing to 1 (see the module)."""
    p = checked_joint(joint)
    return parts(p, broja_optimum(p))


def checked_joint(joint: np.ndarray) -> np.ndarray:
    """`joint` as float64 [x1, x2, y], refused (naming `joint`) unless it is a probability table."""
    p = np.asarray(joint, dtype=np.float64)
    if p.ndim != 3:
        raise ConfigError("joint", f"an array of shape {p.shape}", "a 3-d array P[x1, x2, y]")
    if not np.isfinite(p).all():
        raise ConfigError("joint", "NaN or infinite entries", "finite probabilities P[x1, x2, y]")
    if (p < 0).any():
        raise ConfigError("joint", f"a negative entry ({p.min():.3g})", "probabilities are ≥ 0")
    if abs(p.sum() - 1.0) > JOINT_TOLERANCE:
        raise ConfigError("joint", f"entries summing to {p.sum():.6g}", f"probabilities summing to 1 (within {JOINT_TOLERANCE:g})")
    return p


def broja_support(p: np.ndarray) -> np.ndarray:
    """Where a Q with p's (x1, y) and (x2, y) marginals can put mass: [x1, x2, y] bool."""
    return (p.sum(axis=1) > 0)[:, None, :] & (p.sum(axis=0) > 0)[None, :, :]


def broja_optimum(p: np.ndarray) -> np.ndarray:
    """Q* [x1, x2, y] of a joint p [x1, x2, y]: one variable per entry of p's BROJA support. (A program
    compiled once over a wider support, with the marginals as parameters, would pin the extra entries at
    0 through its constraints; interior-point solvers take several times the iterations for that, or
    stop inaccurate: a program per joint is faster.)"""
    import cvxpy as cp
    import scipy.sparse

    index = np.nonzero(broja_support(p))
    x1, x2, y = index
    _, n2, n_y = p.shape
    n = len(x1)

    def indicator(member: np.ndarray) -> scipy.sparse.csr_matrix:  # [group, entry]
        return scipy.sparse.csr_matrix((np.ones(n), (member.reshape(-1), np.arange(n))))

    rows1, member1 = np.unique(x1 * n_y + y, return_inverse=True)  # the (x1, y) of each entry
    rows2, member2 = np.unique(x2 * n_y + y, return_inverse=True)
    cells = indicator(np.unique(x1 * n2 + x2, return_inverse=True)[1])  # the (x1, x2) of each entry
    q = cp.Variable(n, nonneg=True)
    # Σ q log q/q(x1,x2) = −H_Q(Y|X1,X2), in nats; (cellsᵀ cells) q puts q(x1,x2) beside each entry
    objective = cp.sum(cp.rel_entr(q, (cells.T @ cells) @ q))
    marginals = [indicator(member1) @ q == p.sum(axis=1).reshape(-1)[rows1],
                 indicator(member2) @ q == p.sum(axis=0).reshape(-1)[rows2]]
    value = _solve(cp.Problem(cp.Minimize(objective), marginals), q)
    out = np.zeros(p.shape)
    out[index] = np.clip(value, 0.0, None)
    return out / out.sum()


def _solve(problem, q) -> np.ndarray:
    """The value of q at the optimum: CLARABEL at tight, then at default tolerances; an answer CLARABEL
    calls inaccurate (its tolerances met only loosely) if neither is optimal; SCS only when CLARABEL
    gave none."""
    import cvxpy as cp

    inaccurate = None
    for solver, options in SOLVERS:
        if solver == "SCS" and inaccurate is not None:
            break
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # cvxpy warns on inaccurate solutions: handled here
                problem.solve(solver=solver, **options)
        except cp.error.SolverError:
            continue
        if problem.status == cp.OPTIMAL:
            return q.value
        if problem.status == cp.OPTIMAL_INACCURATE and inaccurate is None:
            inaccurate = q.value.copy()
    if inaccurate is None:
        raise RuntimeError(f"the BROJA program could not be solved by {', '.join(s for s, _ in SOLVERS)} "
                           f"(last status: {problem.status})")
    log.info("a BROJA program was solved only to the solver's reduced accuracy: its parts may be off by more than %g bits",
             CLIP_BITS)
    return inaccurate


def parts(p: np.ndarray, q: np.ndarray) -> PID:
    """The parts, in bits, from the joint p and the BROJA optimum q (both [x1, x2, y], see the module)."""
    n_y = p.shape[2]
    unique1 = _conditional_information(q)
    unique2 = _conditional_information(q.transpose(1, 0, 2))
    redundancy = _mutual_information(q.sum(axis=1)) - unique1  # co-information under Q*
    total = _mutual_information(p.reshape(-1, n_y))
    synergy = total - _mutual_information(q.reshape(-1, n_y))
    return PID(_clipped(redundancy, "redundancy"), (_clipped(unique1, "unique"), _clipped(unique2, "unique")),
               _clipped(synergy, "synergy"), max(total, 0.0))


def _clipped(bits: float, name: str) -> float:
    if -CLIP_BITS < bits < 0:
        return 0.0
    if bits < 0:
        log.warning("PID %s came out at %.3g bits, below solver tolerance: the solver did not converge", name, bits)
    return float(bits)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def _mutual_information(pxy: np.ndarray) -> float:
    """I(X;Y) in bits of a joint [x, y]."""
    return _entropy(pxy.sum(axis=1)) + _entropy(pxy.sum(axis=0)) - _entropy(pxy)


def _conditional_information(p: np.ndarray) -> float:
    """I(X1;Y|X2) in bits of a joint [x1, x2, y]."""
    return _entropy(p.sum(axis=2)) + _entropy(p.sum(axis=0)) - _entropy(p) - _entropy(p.sum(axis=(0, 2)))


# --- windows to codes ---------------------------------------------------------------------------------

def is_semg(group: str) -> bool:
    """Whether a modality group (`emg`, `emg[0:6]`, `hdsemg[::4]`) is cut from a data set's sEMG source."""
    return group.split("[", 1)[0].strip() in SEMG_SOURCES


def window_features(x: np.ndarray, semg: bool) -> np.ndarray:
    """Features of one modality's windows [window, time, channel] -> [window, feature] float64 (module, step 1):
    sEMG: per channel log-RMS, then per channel and band the log mean power in BANDS log-spaced rFFT bands;
    otherwise: per channel mean level. Computed in chunks, so a memory-mapped split is never loaded whole."""
    n, time, channels = x.shape
    chunk = max(1, (1 << 22) // max(1, time * channels))
    return np.concatenate([_chunk_features(np.asarray(x[start : start + chunk], dtype=np.float64), semg)
                           for start in range(0, n, chunk)] or [np.zeros((0, 0))])


def _chunk_features(x: np.ndarray, semg: bool) -> np.ndarray:
    level = x.mean(axis=1)  # [window, channel]
    if not semg:
        return level
    centred = x - level[:, None, :]
    tiny = 1e-12  # a dead channel gives a constant feature, which standardisation then zeroes
    log_rms = 0.5 * np.log((centred**2).mean(axis=1) + tiny)
    power = np.abs(np.fft.rfft(centred, axis=1)) ** 2  # [window, frequency, channel]
    edges = np.unique(np.geomspace(1, power.shape[1], BANDS + 1).round().astype(int))  # skips the DC bin
    bands = [np.log(power[:, lo:hi].mean(axis=1) + tiny) for lo, hi in itertools.pairwise(edges)]
    return np.concatenate([log_rms, *bands], axis=1)


@dataclass(frozen=True)
class Codebook:
    """One modality's discretisation (module, steps 1–3), fitted on the fit windows: the features' mean and
    scale [feature], the principal axes [feature, component], per K the centroids [K, component]."""

    semg: bool
    mean: np.ndarray
    scale: np.ndarray
    axes: np.ndarray
    centroids: dict[int, np.ndarray]

    def points(self, x: np.ndarray) -> np.ndarray:
        """Windows [window, time, channel] -> their principal coordinates [window, component]."""
        return ((window_features(x, self.semg) - self.mean) / self.scale) @ self.axes

    def codes(self, points: np.ndarray, k: int) -> np.ndarray:
        """The nearest centroid of each point [window, component] -> [window] int."""
        from scipy.cluster.vq import vq

        return vq(points, self.centroids[k], check_finite=False)[0].astype(np.int64)


def fit_codebook(x: np.ndarray, semg: bool, ks: tuple[int, ...], components: int, seed: int, stream: int,
                 order: np.ndarray | None = None) -> Codebook:
    """A Codebook fitted on windows x [window, time, channel], taken in `order` [window] (callers pass the
    order of the window keys, so that k-means++ draws the same windows whatever the order of the set).
    `stream` tells the modalities' k-means draws apart."""
    from scipy.cluster.vq import kmeans2

    features = window_features(x, semg)
    features = features if order is None else features[order]
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)  # a constant feature stays 0
    standardised = (features - mean) / scale
    axes = np.linalg.svd(standardised, full_matrices=False)[2][:components].T  # [feature, component]
    points = standardised @ axes
    centroids = {}
    for k in ks:
        generator = np.random.default_rng([_KMEANS_STREAM, seed, stream, k])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty cluster is a code no window takes: harmless here
            centroids[k] = kmeans2(points, k, iter=KMEANS_ITERATIONS, minit="++", seed=generator)[0]
    return Codebook(semg, mean, scale, axes, centroids)


def window_codes(windows: WindowSet, fit: WindowSet, names: tuple[str, ...], config: PIDConfig) -> dict[int, np.ndarray]:
    """Per K, both modalities' codes of the evaluated windows: K -> [modality, window] int."""
    order = np.argsort(np.asarray(fit.start), kind="stable")  # the fit order: the window keys', not the set's
    points = []
    for stream, name in enumerate(names):
        book = fit_codebook(fit.x[name], is_semg(name), config.ks, config.components, config.seed, stream, order)
        points.append((book, book.points(windows.x[name])))
    return {k: np.stack([book.codes(p, k) for book, p in points]) for k in config.ks}


# --- configuration and result -------------------------------------------------------------------------

@dataclass(frozen=True)
class PIDConfig(Options):
    ks: tuple[int, ...] = (4, 8, 16, 32)  # codes per modality, one decomposition each; also "4,8" or a list
    components: int = 8  # principal components of each modality's standardised features
    permutations: int = 20  # target permutations for the plug-in floor (0: no floor)
    bootstrap: int = 100  # segment-bootstrap resamples for the CIs (0: no CIs)
    seed: int = 0  # k-means initialisation, permutations and resamples
    level: float = 0.95
    target: Target = "labels"  # what Y is: the labels, or a model's argmax predictions (model_pid)
    batch_size: int = 256  # windows per forward pass for the predictions (no number depends on it)

    def __post_init__(self) -> None:
        check_choices(self)
        ks = self.ks.split(",") if isinstance(self.ks, str) else self.ks
        try:
            ks = tuple(int(str(k).strip()) for k in ks)
        except (TypeError, ValueError):
            ks = ()
        if not ks or min(ks) < 2 or len(set(ks)) != len(ks):
            raise ConfigError("ks", self.ks, "one or more distinct code counts ≥ 2, e.g. 4,8,16,32")
        object.__setattr__(self, "ks", tuple(sorted(ks)))
        check_counts(self, {"components": 1, "permutations": 0, "bootstrap": 0, "seed": 0, "batch_size": 1})
        check_level(self)

    def to_dict(self) -> dict:
        return super().to_dict() | {"ks": list(self.ks)}


@dataclass(frozen=True)
class PIDResult(TableResult):
    """One row per (K, part) (COLUMNS) and the configuration that produced them."""

    kind: ClassVar[str] = "pid"

    def bits(self, k: int, part: str, column: str = "bits") -> float:
        """One number of the table, e.g. bits(8, "synergy") or bits(8, "synergy", "floor95")."""
        rows = self.table[(self.table.k == k) & (self.table.part == part)]
        if len(rows) != 1:
            raise KeyError(f"{len(rows)} rows for k={k}, part {part!r}")
        return float(rows[column].iloc[0])


def part_names(names: tuple[str, str]) -> tuple[str, ...]:
    """The table's parts for modalities (X1, X2), in PID.values() order."""
    return ("redundancy", f"unique_{names[0]}", f"unique_{names[1]}", "synergy", "mutual_information")


# --- the estimate -------------------------------------------------------------------------------------

def data_pid(windows: WindowSet, fit: WindowSet | None, config: PIDConfig, truth: dict | None = None,
             progress: Callable[[int, int], None] | None = None) -> PIDResult:
    """The PID of the labels over the two modalities of `windows` (X1, X2 in the order of `windows.x`), with
    codes fitted on `fit` (the training split; None: the evaluated windows), its permutation floor and
    segment-bootstrap CIs, and the planted values from `truth` (the synthetic sidecar, or None)."""
    if config.target != "labels":
        raise ConfigError("target", config.target, "the data's PID decomposes the labels; a model's predictions need model_pid")
    names = _two_modalities(tuple(windows.x))
    return _pid(windows, fit, names, np.asarray(windows.y), config, expected_by_part(truth, windows, names), progress)


def model_pid(model: torch.nn.Module, windows: WindowSet, fit: WindowSet | None, config: PIDConfig,
              device: str | torch.device = "cpu",
              truth: dict | None = None, progress: Callable[[int, int], None] | None = None) -> PIDResult:
    """The PID of the model's argmax predictions (config.target "predictions"; "labels" gives the data's
    PID on the same codes) over its two modalities, with the codes, floor and CIs of `data_pid`.
    expected_bits are the planted values of the labels: what a model predicting every label would give."""
    from isoprobe.training.metrics import predict_logits

    names = _two_modalities(tuple(model.modality_names))
    missing = [name for name in names if name not in windows.x]
    if missing:
        raise ConfigError("windows", sorted(windows.x), f"lack the model's modality group(s) {missing}")
    if config.target == "predictions":
        target = predict_logits(model, windows, names, config.batch_size, device).argmax(-1).numpy()
    elif config.target == "labels":
        target = np.asarray(windows.y)
    else:
        raise ConfigError("target", config.target, "choose labels or predictions")
    return _pid(windows, fit, names, target, config, expected_by_part(truth, windows, names), progress)


def run_pid(model: torch.nn.Module, windows: WindowSet, config: PIDConfig, reference: WindowSet | None = None,
            device: str | torch.device = "cpu", truth: dict | None = None,
            progress: Callable[[int, int], None] | None = None) -> PIDResult:
    """The analysis contract of a study step: `model_pid` with the codes fitted on `reference` (the training
    split): the labels' PID (target "labels") or the model's predictions'."""
    return model_pid(model, windows, reference, config, device, truth, progress)


def _two_modalities(names: tuple[str, ...]) -> tuple[str, str]:
    if len(names) != 2:
        raise ConfigError("modalities", ",".join(names), f"a PID needs exactly two modality groups, not {len(names)}")
    return names


def _pid(windows: WindowSet, fit: WindowSet | None, names: tuple[str, str], target: np.ndarray, config: PIDConfig,
         expected: dict | None, progress: Callable[[int, int], None] | None) -> PIDResult:
    if not len(windows):
        raise ConfigError("windows", 0, "no windows to decompose")
    fit = windows if fit is None else fit
    if len(fit) < max(config.ks):
        raise ConfigError("ks", ",".join(map(str, config.ks)), f"at most {len(fit)} codes: the fit set has {len(fit)} windows")
    codes = window_codes(windows, fit, names, config)
    segments = Segments.of_windows(windows)
    target = np.unique(target, return_inverse=True)[1].reshape(-1)  # classes 0…C-1 as present
    resample_weights = segments.weights(config.bootstrap, config.seed)[:, segments.codes]  # [resample, window]
    permuted = permutations(windows.start, config.permutations, config.seed)  # [permutation, window]
    solves, total = 0, len(config.ks) * (1 + config.bootstrap + config.permutations)

    def step() -> None:
        nonlocal solves
        solves += 1
        if progress is not None:
            progress(solves, total)

    frames = []
    for k in config.ks:
        frames.append(_k_rows(k, codes[k], target, resample_weights, permuted, segments, config, step)
                      .assign(part=list(part_names(names))))
        log.info("PID at K=%d: %s bits", k, np.round(frames[-1].bits.to_numpy(), 3).tolist())
    table = pd.concat(frames, ignore_index=True)
    table["target"] = config.target
    table["expected_bits"] = [np.nan if expected is None else expected[p] for p in table.part]
    table["windows"], table["segments"] = len(windows), segments.n_segments
    n_classes = int(target.max()) + 1
    table["caveat"] = ["; ".join(filter(None, (_caveat(k, n_classes, len(windows), segments, config), note)))
                       for k, note in zip(table.k, table.caveat)]
    return PIDResult(config, table[list(COLUMNS)])


def _k_rows(k: int, codes: np.ndarray, target: np.ndarray, resample_weights: np.ndarray, permuted: np.ndarray,
            segments: Segments, config: PIDConfig, step: Callable[[], None]) -> pd.DataFrame:
    """The five rows of one K (without part names): codes [modality, window], target [window] classes
    0…C-1, resample_weights [resample, window], permuted [permutation, window]."""
    n_y = int(target.max()) + 1
    cell = (codes[0] * k + codes[1]) * n_y  # each window's (code1, code2) offset in the flattened joint

    def joint(y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        counts = np.bincount(cell + y, weights=weights, minlength=k * k * n_y).astype(np.float64)
        return (counts / counts.sum()).reshape(k, k, n_y)

    p = joint(target)
    estimate = decomposed([p], step)[0]
    resampled = decomposed([joint(target, w) for w in resample_weights], step)
    # no part is below 0 or above H(Y); a part whose resamples centre further from the estimate than
    # they spread is not one the interval describes (a half-sample, one segment per class, can lose what
    # needs a class's segments together: the two variants of a synergy pair)
    low, high = bootstrap_interval(resampled, estimate, segments.degrees_of_freedom, config.level,
                                   bounds=(0.0, _entropy(p.sum(axis=(0, 1)))))
    shifted = _resample_shift(resampled, estimate)
    low[~np.isnan(shifted)], high[~np.isnan(shifted)] = np.nan, np.nan
    # the fraction's interval from each resample's own ratio (not the bits' interval over one I)
    total, totals = estimate[-1], resampled[:, -1:] if len(resampled) else np.empty((0, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        fractions = np.where(totals > 0, resampled / totals, np.nan)
    fraction = estimate / total if total > 0 else np.full(len(estimate), np.nan)
    fraction_low, fraction_high = bootstrap_interval(fractions, fraction, segments.degrees_of_freedom, config.level,
                                                     bounds=(0.0, 1.0))
    fraction_low[np.isnan(low)], fraction_high[np.isnan(low)] = np.nan, np.nan
    null = decomposed([joint(target[order]) for order in permuted], step)
    floor_mean = null.mean(axis=0) if len(null) else np.full(5, np.nan)
    floor95 = np.percentile(null, 95, axis=0) if len(null) else np.full(5, np.nan)
    notes = ["" if np.isnan(d) else f"resamples centre {d:+.2g} bits from the estimate, beyond their spread: "
             "no CI" for d in shifted]
    return pd.DataFrame({"k": k, "bits": estimate, "fraction": fraction, "ci_low": low, "ci_high": high,
                         "fraction_ci_low": fraction_low, "fraction_ci_high": fraction_high, "floor_mean": floor_mean,
                         "floor95": floor95, "caveat": notes})


def _resample_shift(resampled: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """mean(resamples) − estimate where it exceeds the resamples' standard deviation, else NaN: [part]."""
    if len(resampled) < 2:
        return np.full(len(estimate), np.nan)
    shift = resampled.mean(axis=0) - estimate
    return np.where(np.abs(shift) > resampled.std(axis=0, ddof=1) + 1e-9, shift, np.nan)


def decomposed(joints: list[np.ndarray], step: Callable[[], None]) -> np.ndarray:
    """The parts of each joint [x1, x2, y]: [joint, part] in PID.values() order."""
    out = np.empty((len(joints), 5))
    for index, p in enumerate(joints):
        out[index] = parts(p, broja_optimum(p)).values()
        step()
    return out


def permutations(keys: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` permutations of the windows [permutation, window]: window i takes the target of window
    out[b, i]. Drawn over the windows in the order of their keys (`start`), so that the seed alone, not the
    order of the set, decides which window gets which target."""
    keys = np.asarray(keys)
    order = np.argsort(keys, kind="stable")
    generator = np.random.default_rng([_PERMUTATION_STREAM, seed])
    out = np.empty((count, len(keys)), dtype=np.int64)
    for b in range(count):
        out[b, order] = order[generator.permutation(len(keys))]
    return out


def _caveat(k: int, n_classes: int, n_windows: int, segments: Segments, config: PIDConfig) -> str:
    notes = []
    if k * k * n_classes > n_windows:
        notes.append(f"{k * k * n_classes} cells for {n_windows} windows: the plug-in bias is large (see the floor)")
    if config.bootstrap and segments.n_segments < COVERED_SEGMENTS:
        notes.append(f"{segments.n_segments} segments (< {COVERED_SEGMENTS}): CIs cover less than {config.level:.0%}")
    return "; ".join(notes)


# --- what the synthetic data plant --------------------------------------------------------------------

def expected_pid(truth: dict | None, labels: np.ndarray, repetitions: np.ndarray | None = None) -> dict | None:
    """The parts, in bits, that the planted structure gives over windows with these data-set labels
    [window] (and repetitions [window], which decide each synergy window's variant): part name -> bits,
    the parts named after the sidecar's modalities (redundancy, unique_emg, unique_acc, synergy,
    mutual_information). None for real data (no sidecar), a sidecar without class plans, or a label
    the sidecar has no plan for (rest).

    Derivation. The generator shows, in every window of class c, sEMG pattern first[v] and
    second-modality pattern second[v] of c's plan, v the repetition's variant (0/1, alternating over
    the repetitions; without repetitions each variant is given half of each class's windows, as the
    standard splits have). A code that recovered the pattern exactly would give the joint
    P(pattern1, pattern2, label) over the windows; its BROJA decomposition is the expectation:
    - `either` classes (redundant) have their own pattern in both modalities: X1 = X2 = Y, so R = H(Y);
    - `first` / `second` classes (emg-only, acc-only) show the shared pattern 0 in the other modality,
      which is then constant: the whole H(Y) is unique to the informative one;
    - `both` classes come in XOR pairs {c0, c1}: c0 shows (A, P) or (B, Q), c1 (A, Q) or (B, P). Each
      modality alone tells the pair Z and nothing about the class within it (its pattern is A or B
      whatever the class), and the two together tell the class: with the variants balanced, R = H(Z),
      S = H(Y|Z), U1 = U2 = 0 (the Q making the two patterns independent given Z meets both marginals
      and has I_Q(X1;Y|X2) = 0) — for 8 gestures in 4 equal pairs R = 2 bits, S = 1 bit;
    - the mixed preset combines them, which the decomposition of the joint does without further rules.
    What is planted is the information of a perfect pattern code; a window's features blur it (effort,
    the posture's ramp-in, noise), and the plug-in estimate adds its bias."""
    if not truth or "classes" not in truth or len(truth.get("modalities", ())) != 2:
        return None
    plans = {int(c["label"]): c for c in truth["classes"]}
    labels = np.asarray(labels).reshape(-1)
    if not len(labels) or not set(labels.tolist()) <= set(plans):
        return None
    variants = truth.get("repetition_variants", {})
    counts: dict[tuple[int, int, int], float] = {}
    for index, label in enumerate(labels.tolist()):
        plan = plans[label]
        if repetitions is not None and str(int(repetitions[index])) in variants:
            shown = ((int(variants[str(int(repetitions[index]))]), 1.0),)
        else:
            shown = ((0, 0.5), (1, 0.5))
        for variant, weight in shown:
            key = (int(plan["first"][variant]), int(plan["second"][variant]), label)
            counts[key] = counts.get(key, 0.0) + weight
    axes = [sorted({key[i] for key in counts}) for i in range(3)]
    joint = np.zeros(tuple(len(a) for a in axes))
    for key, count in counts.items():
        joint[tuple(a.index(v) for a, v in zip(axes, key))] += count
    pid = decompose(joint / joint.sum())
    return dict(zip(part_names(tuple(truth["modalities"])), pid.values()))


def expected_by_part(truth: dict | None, windows: WindowSet, names: tuple[str, str]) -> dict | None:
    """`expected_pid` for the evaluated windows, when their two groups are the sidecar's two modalities
    (channel subsets or other pairs are not what was planted: None)."""
    if not truth or set(names) != set(truth.get("modalities", ())):
        return None
    return expected_pid(truth, windows.label, windows.repetition)
