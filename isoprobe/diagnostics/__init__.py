"""Diagnostics of interventions (DESIGN §5): `mmd` holds the numerical core of the distribution-shift
check (per-window cosine similarity of intervened and clean representations, unbiased MMD² with an
RBF kernel and the median-heuristic bandwidth, its permutation test and a clean-versus-clean null)."""
