"""The collection pipeline on SQLite and a real PostgreSQL: workflow, rules, transactions, concurrency, export."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import func, select, text

from prosocial.collect import pipeline
from prosocial.collect.agreement import krippendorff_alpha_nominal
from prosocial.collect.db import alembic_config, current_revision, make_engine, migrate, session_factory
from prosocial.collect.models import Assignment, Base, CollectedDialogue, Revision, Task
from prosocial.collect.prompts import Drafter, dialogue_prompt
from prosocial.collect.security import Signer, hash_password, new_session, verify_password
from prosocial.collect.sources import SituationIn, ethics_situations, interleave, read_situations, sbic_situations
from prosocial.data.formats import read_dialogues, write_dialogues
from prosocial.data.labels import SafetyLabel, aggregate_votes
from prosocial.data.stats import dialogue_stats
from tests.collect_helpers import (
    FEEDBACK,
    ScriptedLM,
    answer_for,
    postgres_bindir,
    postgres_server,
    run_all,
    sqlite_factory,
)


@pytest.fixture(scope="module")
def pg_url():
    if postgres_bindir() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def factory(request, tmp_path):
    if request.param == "sqlite":
        return sqlite_factory(tmp_path / "collect.db")
    url = request.getfixturevalue("pg_url")
    engine = make_engine(url)
    with engine.begin() as connection:  # a clean schema per test on the shared server
        connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate(engine)
    return session_factory(engine)


def _situations() -> list[SituationIn]:
    return [
        SituationIn(f"not tipping waiter number {i}", "socialchemistry", ["It's rude not to tip."]) for i in range(5)
    ]


def _users(factory, n: int) -> list[int]:
    return [pipeline.add_user(factory, f"annotator{i}", "correct horse") for i in range(n)]


def test_password_hashing_signed_cookies_and_csrf():
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert verify_password("correct horse", stored) and not verify_password("wrong horse", stored)
    signer = Signer("k" * 32)
    session = new_session(7)
    cookie = signer.dump(session)
    assert signer.load(cookie).user_id == 7
    payload, mac = cookie.rsplit(".", 1)
    forged = Signer("other key").dump(new_session(1))
    tampered = payload + "." + ("y" if mac[0] == "x" else "x") + mac[1:]  # a MAC starting with "x" once went untouched
    assert signer.load(forged) is None and signer.load(tampered) is None
    assert signer.check_csrf(session, signer.csrf_token(session))
    assert not signer.check_csrf(session, signer.csrf_token(new_session(7))) and not signer.check_csrf(session, "")


def test_krippendorff_alpha_matches_the_published_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal data example: alpha = 0.743.
    units = [[1, 1, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4], [4, 4, 4, 4],
             [1, 1, 2, 1], [2, 2, 2, 2], [5, 5, 5], [1, 1], [3]]
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "a"]]) is None


def test_sources_follow_a1(shared_data: Path, tmp_path: Path):
    ethics = ethics_situations(limit=3, root=shared_data)
    sbic = sbic_situations(limit=3, root=shared_data)
    assert len(ethics) == 3 and all(s.source == "ethics" and not s.as_is for s in ethics)
    assert all(s.as_is and s.rots and 10 <= len(s.text.split()) <= 40 for s in sbic)
    assert all(r.startswith("It's wrong to think") or r.startswith("It's wrong") for s in sbic for r in s.rots)
    csv = tmp_path / "sc.csv"
    csv.write_text('situation,rots\nhoping to spam others,"It\'s bad to intentionally disrupt others.;Be kind."\n')
    (row,) = read_situations(csv)
    assert row.rots == ["It's bad to intentionally disrupt others.", "Be kind."] and row.source == "socialchemistry"
    assert [s.source for s in interleave(ethics, sbic)][:2] == ["ethics", "sbic"]


def test_prompts_are_the_paper_a2_format():
    prompt = dialogue_prompt(["I'm going to skip my friend's wedding."])
    assert prompt.startswith("A is a toxically biased chatbot answering the reason behind its thoughts.")
    assert prompt.endswith("A: I'm going to skip my friend's wedding.\nQ:")
    assert dialogue_prompt(["a", "b"]).endswith("Q: b\nA:")


def test_full_pipeline_exports_prosocialdialog(factory, tmp_path: Path):
    pipeline.import_situations(factory, _situations())
    assert pipeline.import_situations(factory, _situations()) == 0  # re-import adds nothing
    users = _users(factory, 4)
    submitted = run_all(factory, users, Drafter(ScriptedLM()), flag_dialogues=frozenset({1}))
    # per dialogue: 2 annotate + 2 proofread + 3 validate + 3 contexts x 3 labels = 16; dialogue 1 adds a rework
    # and a second validation round (1 + 3)
    assert submitted == 5 * 16 + 4
    progress = pipeline.progress(factory)
    assert progress.dialogues["done"] == 5 and progress.label_units == 15
    assert progress.revisions_per_dialogue >= 1
    with factory() as s:
        for d in s.scalars(select(CollectedDialogue)):
            assert len(d.utterances) == 6  # at most six turns (§3.2)
            assert s.scalar(select(func.count(Revision.id)).join(Assignment).join(Task).where(
                Task.dialogue_id == d.id)) >= 1  # at least one revision per dialogue
        per_task = s.execute(select(Assignment.task_id, func.count()).group_by(Assignment.task_id)).all()
        needed = {task: n for task, n in s.execute(select(Task.id, Task.needed))}
        assert all(n == needed[task] for task, n in per_task)
    dialogues = pipeline.export_dialogues(factory)
    first = dialogues[0]
    assert [t.response_id for t in first.turns] == [0, 1, 2] and first.turns[-1].episode_done
    assert first.turns[1].response == FEEDBACK and first.turns[0].rots == ["It's rude not to tip."]
    for turn in first.turns:
        assert turn.safety_label == aggregate_votes(turn.safety_annotations)
        assert len(turn.safety_annotation_reasons) == 3
    assert dialogues[4].turns[0].safety_label is SafetyLabel.NEEDS_INTERVENTION  # one RED vote wins (A.4)
    for fmt, name in (("hf", "out.jsonl"), ("direct", "out.json")):
        write_dialogues(dialogues, tmp_path / name, format=fmt)
        back = read_dialogues(tmp_path / name, format=fmt)
        assert [t.context for t in back[0].turns] == [t.context for t in first.turns]
        assert back[0].turns[0].safety_annotations == first.turns[0].safety_annotations
    stats = dialogue_stats(dialogues)
    assert stats.dialogues == 5 and stats.utterances == 30 and stats.labelled_contexts == 15


def test_form_rules_of_figures_7_and_10(tmp_path: Path):
    factory = sqlite_factory(tmp_path / "c.db")
    pipeline.import_situations(factory, _situations()[:1])
    (user,) = _users(factory, 1)
    pipeline.advance(factory, Drafter(ScriptedLM()))
    view = pipeline.task_view(factory, pipeline.claim_next(factory, user), user)
    with pytest.raises(pipeline.FormError) as bad:
        pipeline.parse_annotate({"response": ["Too short."]}, view)
    assert len(bad.value.errors) == 3  # under 30 characters, no RoT, no PII certification
    four = "One thing here. Two things here. Three things here. Four things here."
    with pytest.raises(pipeline.FormError, match="1–3 sentences"):
        pipeline.parse_annotate({"response": [four], "rot": ["0"], "pii": ["on"]}, view)
    with pytest.raises(pipeline.FormError, match="from the list"):
        pipeline.parse_annotate({"response": [FEEDBACK], "rot": ["9"], "pii": ["on"]}, view)
    free = pipeline.parse_annotate({"response": [FEEDBACK], "no_problem": ["on"], "pii": ["on"]}, view)
    assert free["rots"] == []
    own = pipeline.parse_annotate({"response": [FEEDBACK], "new_rot_on": ["on"], "new_rot": ["A; B"], "pii": ["on"]},
                                  view)
    assert own["rots"] == ["A", "B"]
    with pytest.raises(pipeline.FormError, match="one sentence"):
        pipeline.parse_label({"label": ["casual"], "reason": ["Fine. Really fine."]}, view)
    with pytest.raises(pipeline.FormError, match="three judgments"):
        pipeline.parse_label({"label": ["__casual__"], "reason": ["Fine."]}, view)
    with pytest.raises(pipeline.FormError, match="at least one"):
        pipeline.parse_proofread({"u0": [view.utterances[0].text]}, view)


def test_double_submit_and_crash_lose_and_duplicate_nothing(factory, monkeypatch):
    pipeline.import_situations(factory, _situations()[:1])
    (user,) = _users(factory, 1)
    pipeline.advance(factory, Drafter(ScriptedLM()))
    assignment = pipeline.claim_next(factory, user)
    answer = answer_for(pipeline.task_view(factory, assignment, user))

    def crash(*_args):
        raise RuntimeError("power cut")

    monkeypatch.setitem(pipeline.EFFECTS, "annotate", crash)
    with pytest.raises(RuntimeError):
        pipeline.submit(factory, assignment, user, answer)
    view = pipeline.task_view(factory, assignment, user)
    assert view.state == "active" and len(view.utterances) == 3  # nothing half-written
    monkeypatch.undo()
    assert pipeline.claim_next(factory, user) == assignment  # the task is still this annotator's
    results = []
    threads = [threading.Thread(target=lambda: results.append(pipeline.submit(factory, assignment, user, answer)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["duplicate"] * 3 + ["submitted"]
    with factory() as s:
        d = s.scalar(select(CollectedDialogue))
        assert [u.position for u in d.utterances] == [0, 1, 2, 3] and d.status == "continue"
        assert s.scalar(select(Task.done).where(Task.kind == "annotate")) == 1


def test_concurrent_annotators_never_share_a_task(factory):
    pipeline.import_situations(factory, _situations())
    users = _users(factory, 8)
    pipeline.advance(factory, Drafter(ScriptedLM()))
    barrier = threading.Barrier(len(users))
    claims: dict[int, int | None] = {}

    def work(user: int) -> None:
        barrier.wait()
        claims[user] = pipeline.claim_next(factory, user)

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = [a for a in claims.values() if a is not None]
    assert len(got) == 5  # five single-annotator tasks, eight annotators: three get nothing
    with factory() as s:
        assert sorted(s.scalars(select(Task.claimed))) == [1] * 5
        assert len(set(s.scalars(select(Assignment.task_id)))) == 5


def test_concurrent_labellers_complete_a_context_once(factory):
    pipeline.import_situations(factory, _situations()[:1])
    users = _users(factory, 4)
    drafter = Drafter(ScriptedLM())
    while pipeline.progress(factory).dialogues["label"] == 0:  # everything up to the safety labels
        pipeline.advance(factory, drafter)
        for user in users[:3]:
            a = pipeline.claim_next(factory, user, kinds=["annotate", "proofread", "validate"])
            if a is not None:
                pipeline.submit(factory, a, user, answer_for(pipeline.task_view(factory, a, user)))
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def label(user: int) -> None:
        barrier.wait()
        while (a := pipeline.claim_next(factory, user)) is not None:
            outcomes.append(pipeline.submit(factory, a, user, answer_for(pipeline.task_view(factory, a, user))))

    threads = [threading.Thread(target=label, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == ["submitted"] * 9  # 3 contexts x 3 labellers
    with factory() as s:
        assert s.scalar(select(CollectedDialogue.status)) == "done"
        labelled = s.execute(select(Assignment.user_id, Task.id).join(Task).where(Task.kind == "label")).all()
        assert len(labelled) == len(set(labelled)) == 9  # nobody labelled a context twice


def test_migrations_are_shipped_and_idempotent(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine)
    migrate(engine)
    assert current_revision(engine) == "0001"
    with engine.connect() as connection:
        tables = {row[0] for row in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
    assert set(Base.metadata.tables) <= tables
    command.downgrade(alembic_config(engine), "base")
    assert current_revision(engine) is None


def test_a_database_that_cannot_be_opened_is_a_clear_cli_error(tmp_path: Path):
    from typer.testing import CliRunner

    from prosocial.cli import app

    result = CliRunner().invoke(app, ["collect", "progress", "--db", f"sqlite:///{tmp_path}/missing/dir/c.db"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # not an uncaught error
    assert "cannot open the database" in " ".join(result.output.split())
