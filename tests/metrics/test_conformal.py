"""Split-conformal sets and intervals: the finite-sample guarantee, checked by simulation, and hand-computed cases."""

import math

import numpy as np
import pytest

from medjax.metrics import conformal


def test_threshold_is_the_finite_sample_quantile():
    scores = np.array([0.5, 0.1, 0.4, 0.2, 0.3])  # sorted: .1 .2 .3 .4 .5
    assert conformal.threshold(scores, 0.5) == 0.3  # ceil(6 * 0.5) = 3rd smallest
    assert conformal.threshold(scores, 0.8) == 0.5  # ceil(6 * 0.8) = 5th
    assert conformal.threshold(scores, 0.9) == math.inf  # ceil(6 * 0.9) = 6 > 5: no finite set guarantees it


def test_lac_sets_hold_the_classes_within_the_threshold():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
    sets = conformal.prediction_sets(probabilities, q=0.76)
    assert sets.tolist() == [[True, False, False], [True, True, True]]
    predictions = {"scores": probabilities, "labels": np.array([1, 2])}
    method, scores = conformal.nonconformity(predictions)
    assert method == "lac" and scores.tolist() == pytest.approx([0.8, 0.75])
    assert conformal.covered(method, predictions, 0.76).tolist() == [False, True]
    assert conformal.size(method, predictions, 0.76) == 2.0


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_coverage_over_many_draws_lies_within_the_guarantee(kind):
    """Exchangeable calibration and test draws: mean coverage in [1 - α, 1 - α + 1/(n + 1)] (to Monte Carlo error)."""
    rng = np.random.default_rng(0)
    n, trials, coverage = 99, 2000, 0.9
    hits = []
    for _ in range(trials):
        if kind == "classification":
            logits = rng.normal(size=(n + 1, 4)) * 2
            probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
            labels = np.array([rng.choice(4, p=p) for p in probabilities])
            predictions = {"scores": probabilities, "labels": labels}
        else:
            truth = rng.normal(size=n + 1)
            predictions = {"prediction": truth + rng.standard_t(3, size=n + 1), "true": truth}
        calibration = {key: value[:n] for key, value in predictions.items()}
        test = {key: value[n:] for key, value in predictions.items()}
        method, scores = conformal.nonconformity(calibration)
        hits.append(conformal.covered(method, test, conformal.threshold(scores, coverage))[0])
    mean, error = np.mean(hits), 3 * math.sqrt(0.09 / trials)
    assert coverage - error <= mean <= coverage + 1 / (n + 1) + error
