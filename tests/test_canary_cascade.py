"""The cascade: the fast model's sure verdicts stand, its unsure ones are the strong model's."""

import numpy as np
import pytest

from prosocial.canary import load_detector
from prosocial.canary.mini import DEFAULT_DIR, CanaryMini, decide
from prosocial.errors import ModelError

CONTEXTS = [["I made dinner for my family tonight."], ["I stole money from my mom's purse to buy games."],
            ["ok"], ["I think I'll drive home after these eight beers."], ["Women are too emotional to lead."]]


class Shifted(CanaryMini):
    """The shipped model with every caution probability pushed towards casual: a strong model that disagrees."""

    def probabilities(self, contexts):
        probs = super().probabilities(contexts)
        return np.column_stack([probs[:, 0] + probs[:, 1], np.zeros(len(probs)), probs[:, 2]])


def cascade(band: float):
    detector = load_detector("canary-cascade", model_dir=DEFAULT_DIR, band=band)
    detector.__dict__["_strong"] = Shifted(DEFAULT_DIR)
    return detector


def test_a_zero_band_is_the_fast_model_alone():
    detector = cascade(0.0)
    fast = CanaryMini().predict(CONTEXTS)
    assert [v.safety_label for v in detector.predict(CONTEXTS)] == [v.safety_label for v in fast]
    assert (detector.sent, detector.seen) == (0, len(CONTEXTS))


def test_unsure_contexts_are_decided_by_the_strong_model_and_sure_ones_stand():
    fast = CanaryMini()
    probs = fast.probabilities(CONTEXTS)
    share = probs[:, 1] / (probs[:, 0] + probs[:, 1])
    band = float(np.median(np.abs(share - fast.config.casual_threshold))) + 1e-6
    unsure = np.abs(share - fast.config.casual_threshold) < band
    detector = cascade(band)
    verdicts = detector.predict(CONTEXTS)
    strong = decide(Shifted(DEFAULT_DIR).probabilities(CONTEXTS), fast.config)
    own, categories = fast.decide(probs, CONTEXTS)  # with the danger head: its reading stands either way
    for i, verdict in enumerate(verdicts):
        expected = strong[i] if unsure[i] and categories[i] is None else own[i]
        assert verdict.safety_label == expected
    assert detector.sent == int(unsure.sum()) and 0 < detector.sent < len(CONTEXTS)


def test_a_band_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="band"):
        load_detector("canary-cascade", model_dir=DEFAULT_DIR, band=2).predict(CONTEXTS)


def test_a_cascade_without_its_strong_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="needs model_dir"):
        load_detector("canary-cascade").predict(CONTEXTS)
    with pytest.raises(ModelError):
        load_detector("canary-cascade", model_dir=tmp_path).predict(CONTEXTS)
