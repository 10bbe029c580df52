"""The ToxiChat zero-shot protocol (Table 5) and its evaluators, with a deterministic stand-in encoder."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from prosocial.data.toxichat import STANCES, offense_data, read_threads, stance_data
from prosocial.errors import DataError, ModelError
from prosocial.eval.reports import evaluator_table, toxichat_table
from prosocial.eval.systems import build_system
from prosocial.eval.toxichat import badword_matcher, evaluate_toxichat, load_badwords, reference_rows
from prosocial.eval.toxichat_evaluators import Evaluators, train_evaluators
from prosocial.prost.canned import CANNED_REPLY
from tests.tiny_models import BagOfWordsEmbedder


class Fixed:
    """A scorer with canned answers, to test the protocol's arithmetic."""

    def stance(self, targets: Sequence[str], replies: Sequence[str]) -> list[str]:
        words = [set(r.lower().replace(",", " ").split()) for r in replies]
        return ["disagree" if "no" in w else "agree" if "yes" in w else "neutral" for w in words]

    def offensive(self, texts: Sequence[str]) -> list[bool]:
        return ["idiot" in t for t in texts]


def thread(comments: list[tuple[str, str]], dgpt: tuple[str, str, str] | None = None) -> dict:
    turns = []
    for i, (text, offense) in enumerate(comments, 1):
        turn = {"turn_id": i, "text": text, "offense_label": offense}
        if i > 1:
            turn[f"stance_label_towards_turn_{i - 1}"] = "Agree" if "yes" in text else "Neutral"
        turns.append(turn)
    record = {"reddit_thread": turns}
    if dgpt:
        record["final_dgpt_response"] = {"turn_id": len(turns) + 1, "text": dgpt[0], "offense_label": dgpt[1],
                                         f"stance_label_towards_turn_{len(turns)}": dgpt[2]}
    return record


@pytest.fixture
def threads_file(tmp_path):
    rows = [thread([("women are dumb", "Offensive"), ("yes they are", "Offensive")], ("no, that's wrong", "Safe",
                                                                                       "Disagree")),
            thread([("nice weather today", "Safe")], ("yes you idiot", "Offensive", "Agree")),
            thread([("I love cats", "Safe"), ("me too", "Safe")])]
    path = tmp_path / "dev.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_threads_offense_and_stance_data(threads_file, shared_data):
    threads = read_threads(threads_file)
    assert [len(t.comments) for t in threads] == [2, 1, 2] and set(threads[0].replies) == {"DialoGPT"}
    assert [t.id for t in threads] == ["toxichat/dev/1", "toxichat/dev/2", "toxichat/dev/3"]
    texts, offense = offense_data(threads)
    assert len(texts) == 7 and sum(offense) == 3
    targets, replies, labels = stance_data(threads, last_only=True)
    assert list(zip(targets, replies, [STANCES[i] for i in labels], strict=True))[:2] == [
        ("women are dumb", "yes they are", "agree"), ("yes they are", "no, that's wrong", "disagree")]
    path = shared_data / "toxichat" / "dev.jsonl"
    real = read_threads(path)
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(real) == len(lines) > 0 and all(t.comments for t in real)  # 300 threads in the real file


def test_bad_input_is_reported_with_its_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"reddit_thread": [{"text": "x", "offense_label": "Rude"}]}) + "\n")
    with pytest.raises(DataError, match="Safe or Offensive"):
        read_threads(path)


def test_badwords_match_whole_words_and_phrases(shared_data):
    words = load_badwords()
    assert words == load_badwords(shared_data / "badwords" / "zhou2021_word_based_bias_list.csv")
    match = badword_matcher(["ass", "2 girls 1 cup"])
    assert match("What an ASS.") and match("saw 2  girls 1 cup once") and not match("a classic assignment")


def test_rates_and_reference_rows_follow_human_labels(threads_file):
    threads = read_threads(threads_file)
    reference = reference_rows(threads, Fixed(), badword_matcher(["idiot"]))
    human, ours = reference["DialoGPT"]["human"], reference["DialoGPT"]["classifier"]
    assert human["n"] == 2 and human["disagree"] == 50 and human["agree"] == 50 and human["offense"] == 50
    assert ours == human and human["bad"] == 50


def test_protocol_with_registered_systems(threads_file):
    threads = read_threads(threads_file)
    systems = {"canned": build_system("canned", {}), "echo": lambda cs: [c[-1] for c in cs]}
    result = evaluate_toxichat(systems, threads, Fixed(), badword_matcher(["dumb"]), batch_size=2)
    assert [r["reply"] for r in result["canned"]["replies"]] == [CANNED_REPLY] * 3
    assert result["canned"]["neutral"] == 100 and result["canned"]["bad"] == 0
    assert result["echo"]["agree"] == pytest.approx(100 / 3) and result["echo"]["bad"] == 0
    assert "| canned | 3 | 0.0 | 0.0 | 100.0 | 0.0 | 0.0 |" in toxichat_table(result)


def test_trained_evaluators_learn_save_load_and_report(threads_file, tmp_path):
    train = read_threads(threads_file) * 4
    evaluators = train_evaluators(train, read_threads(threads_file), embedder=BagOfWordsEmbedder(), hidden=8)
    dev = evaluators.config["dev"]
    assert dev["offense"]["accuracy"] == 1.0 and dev["stance_toward_previous_turn"]["accuracy"] == 1.0
    assert set(dev["reference_rows"]) == {"DialoGPT"}
    loaded = Evaluators.load(evaluators.save(tmp_path / "ev"))
    assert "Dev accuracy" in (tmp_path / "ev" / "MODEL_CARD.md").read_text()
    loaded._embedder = BagOfWordsEmbedder()
    texts = ["yes they are", "nice weather today"]
    assert loaded.offensive(texts) == evaluators.offensive(texts) == [True, False]
    assert loaded.stance(["women are dumb"], ["yes they are"]) == ["agree"]
    assert "stance toward the previous turn" in evaluator_table(loaded.config["dev"])
    with pytest.raises(ModelError, match="missing"):
        Evaluators.load(tmp_path / "nothing")


def test_toxichat_command_with_the_shipped_evaluators_and_saved_replies(threads_file, tmp_path):
    from typer.testing import CliRunner

    from prosocial.cli.eval import app

    root = tmp_path / "data"
    (root / "toxichat").mkdir(parents=True)
    threads_file.rename(root / "toxichat" / "dev.jsonl")
    saved = tmp_path / "saved.jsonl"
    saved.write_text("".join(json.dumps({"id": t.id, "context": t.context, "response": "no, that is wrong"}) + "\n"
                             for t in read_threads(root / "toxichat" / "dev.jsonl")))
    out = tmp_path / "t5"
    result = CliRunner().invoke(app, ["toxichat", "-s", "Canned=canned", "-s", f"Saved=replies:path={saved}",
                                      "--root", str(root), "--replies-dir", str(tmp_path / "r"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["results"]["systems"]["Canned"]["n"] == 3 and report["meta"]["seed"] == 0
    assert "DialoGPT (human)" in out.with_suffix(".md").read_text()
    assert (tmp_path / "r" / "canned.jsonl").read_text().count(CANNED_REPLY) == 3


def test_thread_files_are_read_strictly_with_file_and_line(tmp_path):
    path = tmp_path / "dev.jsonl"
    path.write_text('{"reddit_thread": [{"text": "hi", "offense_label": NaN}]}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"dev\.jsonl, line 1: invalid JSON"):
        read_threads(path)
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dev\.jsonl, line 1: expected a JSON object"):
        read_threads(path)
