"""One study report, built once for the report tests and the browser test."""

from __future__ import annotations

import json

import pytest

from isoprobe.reports.html import ReportConfig, write_report
from tests.reports.study_fixture import MODELS, make_study

BOOTSTRAP = 200
SUBJECTS = (1, 2)


@pytest.fixture(scope="package")
def study_report(tmp_path_factory):
    """(study folder, report.json) of a study of 2 subjects × 1 seed × 6 models with every table (as
    analyses/quick.toml: too few subjects for a pooled CI); four of the models sweep the sEMG channel count
    (4 and 12, with and without acc)."""
    root = make_study(tmp_path_factory.mktemp("study"), subjects=SUBJECTS, seeds=(0,),
                      models=[MODELS[0], MODELS[3], MODELS[4], MODELS[2], MODELS[5], MODELS[6]])
    report = write_report(root, ReportConfig(subject_bootstrap=BOOTSTRAP, seed=0, runs_shown=2))
    return root, json.loads((report / "report.json").read_text(encoding="utf-8"))
