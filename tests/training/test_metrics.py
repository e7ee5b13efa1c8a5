"""`evaluate` against a naive loop, and `predict_logits` against one unbatched forward pass."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from isoprobe.training.metrics import evaluate, predict_logits


def naive(predicted, target, n_classes):
    """The textbook definitions, one window at a time."""
    confusion = [[0] * n_classes for _ in range(n_classes)]
    for p, t in zip(predicted, target):
        confusion[t][p] += 1
    per_class = []
    for c in range(n_classes):
        support = sum(confusion[c])
        per_class.append(confusion[c][c] / support if support else math.nan)
    present = [a for a in per_class if not math.isnan(a)]
    accuracy = sum(int(p == t) for p, t in zip(predicted, target)) / len(target)
    return accuracy, sum(present) / len(present), per_class, confusion


@pytest.mark.parametrize("seed", range(5))
def test_evaluate_matches_naive_loop(seed):
    rng = np.random.default_rng(seed)
    n_classes = 6
    target = rng.choice([0, 1, 2, 4, 5], size=200, p=[0.5, 0.2, 0.1, 0.1, 0.1])  # class 3 never occurs
    predicted = np.where(rng.random(200) < 0.6, target, rng.integers(0, n_classes, 200))  # class 3 is predicted
    result = evaluate(predicted, target, n_classes)
    accuracy, balanced, per_class, confusion = naive(predicted.tolist(), target.tolist(), n_classes)
    assert result.n == 200
    assert result.accuracy == pytest.approx(accuracy)
    assert result.balanced_accuracy == pytest.approx(balanced)
    np.testing.assert_allclose(result.per_class_accuracy, per_class, equal_nan=True)
    assert np.isnan(result.per_class_accuracy[3])
    np.testing.assert_array_equal(result.confusion, confusion)
    assert result.confusion[:, 3].sum() > 0 and result.confusion[3].sum() == 0
    # imbalanced classes: balanced accuracy is not plain accuracy
    assert result.balanced_accuracy != pytest.approx(result.accuracy)


def test_evaluate_perfect_and_all_wrong():
    target = np.array([0, 0, 1, 2, 2, 2])
    perfect = evaluate(target, target, 3)
    assert perfect.accuracy == perfect.balanced_accuracy == 1.0
    np.testing.assert_array_equal(perfect.confusion, np.diag([2, 1, 3]))
    wrong = evaluate((target + 1) % 3, target, 3)
    assert wrong.accuracy == wrong.balanced_accuracy == 0.0
    assert wrong.confusion[0, 1] == 2 and wrong.confusion[2, 0] == 3


def test_evaluate_empty_split_is_nan_not_an_error():
    result = evaluate(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 3)
    assert result.n == 0 and math.isnan(result.accuracy) and math.isnan(result.balanced_accuracy)
    assert np.isnan(result.per_class_accuracy).all() and result.confusion.sum() == 0


def test_evaluation_to_dict_names_classes():
    result = evaluate(np.array([0, 1, 1]), np.array([0, 1, 0]), 3)
    out = result.to_dict(("rest", "E1-01", "E1-02"))
    assert out["per_class_accuracy"]["rest"] == 0.5 and out["per_class_accuracy"]["E1-01"] == 1.0
    assert out["per_class_accuracy"]["E1-02"] is None  # absent class: null in JSON, not NaN
    json.dumps(out, allow_nan=False)
    assert out["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]] and out["n"] == 3
    assert out["class_names"] == ["rest", "E1-01", "E1-02"]


def test_predict_logits_batches_equal_one_pass_and_keep_training_mode(hierarchical_run):
    model, data = hierarchical_run.model, hierarchical_run.data
    names = tuple(g.name for g in model.config.groups)
    test = data.splits["test"]
    model.train()
    try:
        batched = predict_logits(model, test, names, batch_size=7)
        assert model.training  # restored
        model.eval()
        with torch.no_grad():
            whole = model(*(torch.as_tensor(np.asarray(test.x[n])) for n in names))
    finally:
        model.eval()
    assert batched.shape == (len(test), data.n_classes)
    torch.testing.assert_close(batched, whole)
    # the dict form (windows by group name) gives the same
    torch.testing.assert_close(predict_logits(model, test.x, names, batch_size=50), whole)
