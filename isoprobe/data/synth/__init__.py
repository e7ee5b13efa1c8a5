"""Synthetic data with planted structure, written in the real file layouts (DESIGN §2.3)."""

from isoprobe.data.synth.generate import SIDECAR, SynthConfig, SynthResult, generate, read_ground_truth
from isoprobe.data.synth.structure import PRESETS, ClassPlan, plan_classes

__all__ = ["PRESETS", "SIDECAR", "ClassPlan", "SynthConfig", "SynthResult", "generate", "plan_classes", "read_ground_truth"]
