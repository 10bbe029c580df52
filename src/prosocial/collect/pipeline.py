"""The collection pipeline (paper §3, Figure 2) as database state transitions.

A dialogue moves draft → annotate → (continue → proofread → annotate)… → proofread → validate
(→ rework → validate …) → label → done. LM steps (`advance`) and human steps (`submit`) each change one
dialogue inside one transaction, guarded by conditional updates, so a crash, a retry or a double submit
never loses or duplicates work, and two annotators never hold the same single-annotator task.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from prosocial.collect.agreement import krippendorff_alpha_nominal
from prosocial.collect.db import transaction
from prosocial.collect.models import Assignment, CollectedDialogue, Revision, Situation, Task, User, Utterance, utcnow
from prosocial.collect.prompts import Drafter
from prosocial.collect.security import hash_password, verify_password
from prosocial.collect.sources import SituationIn
from prosocial.data.labels import Coarse, aggregate_votes
from prosocial.data.schema import Dialogue, Turn

STATUSES = ("draft", "annotate", "continue", "proofread", "validate", "rework", "label", "done")
TASK_KINDS = ("annotate", "proofread", "rework", "validate", "label")
#: Annotators per task: one writer or proofreader, three validators (§3.2) and three safety labellers (§3.3).
NEEDED = {"annotate": 1, "proofread": 1, "rework": 1, "validate": 3, "label": 3}
LEASE = timedelta(hours=6)
MIN_RESPONSE_CHARS = 30
MAX_SELECTED_ROTS = 2
Form = dict[str, list[str]]


class FormError(ValueError):
    """The submission breaks the task's rules; `errors` lists every problem so the page can show them all."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


class TaskGone(LookupError):
    """No such assignment for this annotator (never theirs, or released after its lease ran out)."""


def count_sentences(text: str) -> int:
    """Pieces between sentence-ending punctuation; the page's live counter (static/collect.js) does the same."""
    return sum(1 for piece in re.split(r"[.!?]+", text) if piece.strip())


def speaker(position: int) -> str:
    """Even positions are the problematic speaker (the LM's role), odd ones the prosocial speaker."""
    return "problematic" if position % 2 == 0 else "prosocial"


# --------------------------------------------------------------------------- users and import


def add_user(factory: sessionmaker[Session], username: str, password: str, role: str = "annotator") -> int:
    if role not in ("annotator", "admin"):
        raise ValueError(f"unknown role {role!r}; expected 'annotator' or 'admin'")
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{2,64}", username):
        raise ValueError("a username has 2–64 letters, digits or _ . @ -")
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    with transaction(factory) as s:
        if s.scalar(select(User.id).where(User.username == username)) is not None:
            raise ValueError(f"user {username!r} already exists")
        user = User(username=username, password_hash=hash_password(password), role=role)
        s.add(user)
        s.flush()
        return user.id


def authenticate(factory: sessionmaker[Session], username: str, password: str) -> User | None:
    with factory() as s:
        user = s.scalar(select(User).where(User.username == username))
    if user is None:
        verify_password(password, _DUMMY_HASH)  # same work either way, so timing does not reveal usernames
        return None
    return user if verify_password(password, user.password_hash) else None


_DUMMY_HASH = hash_password("not a real password")


def import_situations(factory: sessionmaker[Session], items: Iterable[SituationIn], rounds: int = 2) -> int:
    """Store new situations, each with a dialogue waiting for its LM-drafted opener; duplicates are skipped."""
    if rounds not in (1, 2):
        raise ValueError("rounds must be 1 or 2 (the paper collects at most six utterances)")
    added = 0
    with transaction(factory) as s:
        seen = {(src, text) for src, text in s.execute(select(Situation.source, Situation.text))}
        for item in items:
            if (item.source, item.text) in seen:
                continue
            seen.add((item.source, item.text))
            situation = Situation(source=item.source, text=item.text, rots=item.rots, as_is=item.as_is, etc=item.etc)
            s.add(CollectedDialogue(situation=situation, rounds=rounds, status="draft"))
            added += 1
    return added


# --------------------------------------------------------------------------- LM steps


def _new_task(s: Session, kind: str, dialogue_id: int, round: int = 0, turn: int = 0, note: dict | None = None) -> None:
    s.add(Task(kind=kind, dialogue_id=dialogue_id, round=round, turn=turn, needed=NEEDED[kind], note=note or {}))


def _move(s: Session, dialogue_id: int, old: str, new: str) -> bool:
    """Compare-and-set the dialogue's status; False when another worker already moved it."""
    result = s.execute(
        update(CollectedDialogue)
        .where(CollectedDialogue.id == dialogue_id, CollectedDialogue.status == old)
        .values(status=new, updated_at=utcnow())
    )
    return result.rowcount == 1


def advance(factory: sessionmaker[Session], drafter: Drafter, batch: int = 8) -> int:
    """Run the LM on every dialogue waiting for it (openers, then continuations); returns dialogues advanced.

    The LM runs outside any transaction (it is slow); each result is committed only if the dialogue is still
    in the state it was read in, so concurrent workers or a rerun after a crash do not write twice.
    """
    moved = 0
    while True:
        with factory() as s:
            drafts = s.scalars(select(CollectedDialogue).where(CollectedDialogue.status == "draft").limit(batch)).all()
            situations = [d.situation for d in drafts]
            waiting = s.scalars(
                select(CollectedDialogue).where(CollectedDialogue.status == "continue").limit(batch)
            ).all()
            histories = [[u.text for u in d.utterances] for d in waiting]
        if not drafts and not waiting:
            return moved
        if drafts:
            moved += _draft_openers(factory, drafter, drafts, situations)
        if waiting:
            moved += _continue(factory, drafter, waiting, histories)


def _draft_openers(factory, drafter: Drafter, drafts: list, situations: list[Situation]) -> int:
    convert = [i for i, sit in enumerate(situations) if not sit.as_is]
    firsts = [sit.text for sit in situations]
    for i, text in zip(convert, drafter.first_person([situations[i].text for i in convert]), strict=True):
        firsts[i] = text
    questions = drafter.next_utterance([[f] for f in firsts])
    answers = drafter.next_utterance([[f, q] for f, q in zip(firsts, questions, strict=True)])
    need_rots = [i for i, sit in enumerate(situations) if not sit.rots]
    machine_rots = dict(zip(need_rots, drafter.rots([situations[i].text for i in need_rots]), strict=True))
    moved = 0
    for i, d in enumerate(drafts):
        with transaction(factory) as s:
            if not _move(s, d.id, "draft", "annotate"):
                continue
            if machine_rots.get(i):
                s.get(Situation, situations[i].id).rots = [machine_rots[i]]
            for position, text in enumerate((firsts[i], questions[i], answers[i])):
                s.add(Utterance(dialogue_id=d.id, position=position, text=text, draft=text, origin="lm"))
            _new_task(s, "annotate", d.id, round=1)
            moved += 1
    return moved


def _continue(factory, drafter: Drafter, waiting: list, histories: list[list[str]]) -> int:
    moved = 0
    for d, history, text in zip(waiting, histories, drafter.next_utterance(histories), strict=True):
        with transaction(factory) as s:
            if not _move(s, d.id, "continue", "proofread"):
                continue
            s.add(Utterance(dialogue_id=d.id, position=len(history), text=text, draft=text, origin="lm"))
            _new_task(s, "proofread", d.id, round=(len(history) - 2) // 2)
            moved += 1
    return moved


# --------------------------------------------------------------------------- task assignment


def claim_next(factory: sessionmaker[Session], user_id: int, kinds: Iterable[str] | None = None) -> int | None:
    """The annotator's open assignment, else a newly leased task (oldest first); None when nothing is left.

    A lease is taken by `claimed = claimed + 1 WHERE claimed < needed`, which both databases apply atomically,
    so a single-annotator task is never handed out twice; the (task, user) key stops anyone doing a task twice.
    """
    kinds = list(kinds or TASK_KINDS)
    for _attempt in range(3):
        try:
            with transaction(factory) as s:
                _release_expired(s)
                mine = s.scalar(
                    select(Assignment.id)
                    .join(Task)
                    .where(Assignment.user_id == user_id, Assignment.state == "active", Task.kind.in_(kinds))
                    .order_by(Assignment.id)
                )
                if mine is not None:
                    return mine
                done_by_me = select(Assignment.task_id).where(Assignment.user_id == user_id)
                candidates = s.scalars(
                    select(Task.id)
                    .where(
                        Task.status == "open",
                        Task.claimed < Task.needed,
                        Task.kind.in_(kinds),
                        Task.id.not_in(done_by_me),
                    )
                    .order_by(Task.id)
                    .limit(25)
                ).all()
                for task_id in candidates:
                    leased = s.execute(
                        update(Task)
                        .where(Task.id == task_id, Task.claimed < Task.needed, Task.status == "open")
                        .values(claimed=Task.claimed + 1)
                    )
                    if leased.rowcount == 1:
                        assignment = Assignment(task_id=task_id, user_id=user_id, state="active", answer={})
                        s.add(assignment)
                        s.flush()
                        return assignment.id
                return None
        except IntegrityError:  # the same annotator claimed twice at once; the retry returns the first claim
            continue
    return None


def _release_expired(s: Session) -> None:
    expired = s.execute(
        select(Assignment.id, Assignment.task_id).where(
            Assignment.state == "active", Assignment.assigned_at < utcnow() - LEASE
        )
    ).all()
    for assignment_id, task_id in expired:
        gone = s.execute(delete(Assignment).where(Assignment.id == assignment_id, Assignment.state == "active"))
        if gone.rowcount == 1:
            s.execute(update(Task).where(Task.id == task_id).values(claimed=Task.claimed - 1))


# --------------------------------------------------------------------------- what a task page shows


@dataclass
class UtteranceView:
    position: int
    speaker: str
    text: str
    rots: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


@dataclass
class TaskView:
    """Everything a task page (or a scripted annotator) needs; built from the database, never from the form."""

    assignment_id: int
    kind: str
    state: str
    dialogue_id: int
    round: int
    turn: int
    situation: str
    utterances: list[UtteranceView]
    candidates: list[str]
    previous_rots: list[str]
    comments: list[str]
    answer: dict[str, Any]


def _previous_rots(utterances: list[Utterance], before: int) -> list[str]:
    for u in reversed(utterances[:before]):
        if u.origin == "annotator" and u.position % 2 == 1 and u.rots:
            return list(u.rots)
    return []


def task_view(factory: sessionmaker[Session], assignment_id: int, user_id: int) -> TaskView:
    """The task behind one of this annotator's assignments; raises `TaskGone` for anybody else's."""
    with factory() as s:
        a = s.get(Assignment, assignment_id)
        if a is None or a.user_id != user_id:
            raise TaskGone(assignment_id)
        task = a.task
        d = task.dialogue
        utterances = list(d.utterances)
        flags = {int(k): v for k, v in (task.note.get("flags") or {}).items()}
        if task.kind == "label":
            utterances = utterances[: 2 * task.turn + 1]
        position = 2 * task.round + 1 if task.kind == "annotate" else len(utterances)
        return TaskView(
            assignment_id=a.id,
            kind=task.kind,
            state=a.state,
            dialogue_id=d.id,
            round=task.round,
            turn=task.turn,
            situation=d.situation.text,
            utterances=[
                UtteranceView(u.position, speaker(u.position), u.text, list(u.rots), flags.get(u.position, []))
                for u in utterances
            ],
            candidates=list(d.situation.rots),
            previous_rots=_previous_rots(utterances, position),
            comments=list(task.note.get("comments") or []),
            answer=dict(a.answer),
        )


# --------------------------------------------------------------------------- form parsing (no writes)


def _one(form: Form, name: str) -> str:
    return (form.get(name) or [""])[0].strip()


def _checked(form: Form, name: str) -> bool:
    return _one(form, name) in ("on", "1", "true", "yes")


def _split_rots(text: str) -> list[str]:
    return [r.strip() for r in text.split(";") if r.strip()]


def parse_annotate(form: Form, view: TaskView) -> dict[str, Any]:
    """Figure 7: pick one or two candidate RoTs or write new ones, then 1–3 sentences (≥ 30 characters)."""
    errors: list[str] = []
    response = " ".join(_one(form, "response").split())
    sentences = count_sentences(response)
    if len(response) < MIN_RESPONSE_CHARS:
        errors.append(f"Write at least {MIN_RESPONSE_CHARS} characters ({len(response)} so far).")
    if not 1 <= sentences <= 3:
        errors.append(f"Write 1–3 sentences ({sentences} detected).")
    picked: list[str] = []
    for value in form.get("rot", []):
        if not value.isdigit() or int(value) >= len(view.candidates):
            errors.append("Choose RoTs from the list shown.")
            break
        picked.append(view.candidates[int(value)])
    if len(picked) > MAX_SELECTED_ROTS:
        errors.append(f"Select at most {MAX_SELECTED_ROTS} candidate RoTs.")
    new_rots = _split_rots(_one(form, "new_rot")) if _checked(form, "new_rot_on") else []
    if _checked(form, "new_rot_on") and not new_rots:
        errors.append("Write your new rule-of-thumb, or untick its box.")
    revised = _split_rots(_one(form, "revised_rots")) if _checked(form, "previous_problematic") else []
    if _checked(form, "previous_problematic") and not revised:
        errors.append("Write the revised rule-of-thumb, or untick 'the previous RoT is problematic'.")
    implied = _checked(form, "previous_implied") and bool(view.previous_rots)
    rots = list(dict.fromkeys(picked + new_rots + ((revised or view.previous_rots) if implied else [])))
    no_problem = _checked(form, "no_problem")
    if not rots and not no_problem:
        errors.append("Select or write the rule-of-thumb your response is grounded on (or tick 'nothing problematic').")
    if not _checked(form, "pii"):
        errors.append("Certify that your response contains no personally identifiable information.")
    if errors:
        raise FormError(errors)
    return {"response": response, "rots": rots, "revised_previous_rots": revised, "no_problem": no_problem}


def parse_proofread(form: Form, view: TaskView) -> dict[str, Any]:
    """Figure 8: blank fields mean 'no change'; at least one utterance must be revised."""
    current = {u.position: u.text for u in view.utterances}
    edits = {}
    for position, text in current.items():
        new = " ".join(_one(form, f"u{position}").split())
        if new and new != text:
            edits[str(position)] = new
    if not edits:
        raise FormError(["Revise at least one utterance (leave the others blank)."])
    return {"edits": edits}


FLAG_KINDS = ("incoherent", "harsh")


def parse_validate(form: Form, view: TaskView) -> dict[str, Any]:
    """§3.2 validation: report incoherent utterances and accusatory/harsh/rude feedback (none is a valid answer)."""
    positions = {u.position for u in view.utterances}
    flags: dict[str, list[str]] = {}
    for kind in FLAG_KINDS:
        for value in form.get(f"flag_{kind}", []):
            if not value.isdigit() or int(value) not in positions:
                raise FormError(["Flag utterances from the dialogue shown."])
            if kind == "harsh" and int(value) % 2 == 0:
                raise FormError(["Only the prosocial speaker's feedback can be flagged as harsh."])
            flags.setdefault(value, []).append(kind)
    return {"flags": flags, "comment": " ".join(_one(form, "comment").split())}


def parse_label(form: Form, view: TaskView) -> dict[str, Any]:
    """Figure 10: one of the three classes and a one-sentence rationale."""
    errors = []
    label = _one(form, "label")
    if label not in {c.value for c in Coarse}:
        errors.append("Choose one of the three judgments.")
    reason = " ".join(_one(form, "reason").split())
    if not reason:
        errors.append("Write one sentence explaining your judgment.")
    elif count_sentences(reason) > 1:
        errors.append("Keep the rationale to one sentence.")
    if errors:
        raise FormError(errors)
    return {"label": label, "reason": reason}


PARSERS: dict[str, Callable[[Form, TaskView], dict[str, Any]]] = {
    "annotate": parse_annotate,
    "proofread": parse_proofread,
    "rework": parse_proofread,
    "validate": parse_validate,
    "label": parse_label,
}


# --------------------------------------------------------------------------- submission (one transaction)


def submit(factory: sessionmaker[Session], assignment_id: int, user_id: int, form: Form) -> str:
    """Record an answer and, when the task is complete, move the dialogue on; "submitted" or "duplicate".

    Everything happens in one transaction: a failure anywhere leaves the assignment open, and a second
    submit of the same assignment changes nothing ("duplicate").
    """
    view = task_view(factory, assignment_id, user_id)
    if view.state == "submitted":
        return "duplicate"
    answer = PARSERS[view.kind](form, view)
    with transaction(factory) as s:
        # Serialise all submissions touching one dialogue (a row lock on PostgreSQL; SQLite locks the database).
        s.execute(select(CollectedDialogue.id).where(CollectedDialogue.id == view.dialogue_id).with_for_update())
        recorded = s.execute(
            update(Assignment)
            .where(Assignment.id == assignment_id, Assignment.user_id == user_id, Assignment.state == "active")
            .values(state="submitted", answer=answer, submitted_at=utcnow())
        )
        if recorded.rowcount != 1:
            if s.get(Assignment, assignment_id) is None:
                raise TaskGone(assignment_id)
            return "duplicate"
        task = s.get(Task, s.scalar(select(Assignment.task_id).where(Assignment.id == assignment_id)))
        s.execute(update(Task).where(Task.id == task.id).values(done=Task.done + 1))
        s.refresh(task)
        if task.done >= task.needed:
            task.status = "done"
            s.flush()
            EFFECTS[task.kind](s, task, assignment_id)
    return "submitted"


def _utterances(s: Session, dialogue_id: int) -> dict[int, Utterance]:
    return {u.position: u for u in s.scalars(select(Utterance).where(Utterance.dialogue_id == dialogue_id))}


def _answers(s: Session, task: Task) -> list[dict[str, Any]]:
    rows = s.scalars(
        select(Assignment).where(Assignment.task_id == task.id, Assignment.state == "submitted").order_by(Assignment.id)
    )
    return [a.answer for a in rows]


def _after_annotate(s: Session, task: Task, assignment_id: int) -> None:
    (answer,) = _answers(s, task)
    d = s.get(CollectedDialogue, task.dialogue_id)
    utterances = _utterances(s, d.id)
    position = 2 * task.round + 1
    if answer["revised_previous_rots"]:
        for u in utterances.values():
            if u.origin == "annotator" and u.position < position and u.position % 2 == 1:
                u.rots = answer["revised_previous_rots"]
    s.add(
        Utterance(dialogue_id=d.id, position=position, text=answer["response"], origin="annotator", rots=answer["rots"])
    )
    if task.round < d.rounds:
        d.status = "continue"  # the LM writes the next problematic utterance, then a proofreader checks it
    else:
        d.status = "proofread"
        _new_task(s, "proofread", d.id, round=task.round)


def _apply_edits(s: Session, task: Task, assignment_id: int) -> None:
    (answer,) = _answers(s, task)
    utterances = _utterances(s, task.dialogue_id)
    for position, text in answer["edits"].items():
        u = utterances[int(position)]
        s.add(Revision(utterance_id=u.id, assignment_id=assignment_id, before=u.text, after=text))
        u.text = text


def _start_validation(s: Session, d: CollectedDialogue) -> None:
    d.validation_round += 1
    d.status = "validate"
    _new_task(s, "validate", d.id, round=d.validation_round)


def _after_proofread(s: Session, task: Task, assignment_id: int) -> None:
    _apply_edits(s, task, assignment_id)
    d = s.get(CollectedDialogue, task.dialogue_id)
    if task.round < d.rounds:
        d.status = "annotate"
        _new_task(s, "annotate", d.id, round=task.round + 1)
    else:
        _start_validation(s, d)


def _after_rework(s: Session, task: Task, assignment_id: int) -> None:
    _apply_edits(s, task, assignment_id)
    _start_validation(s, s.get(CollectedDialogue, task.dialogue_id))


def _after_validate(s: Session, task: Task, assignment_id: int) -> None:
    """Any flag from any of the three validators sends the dialogue back for re-annotation (§3.2)."""
    d = s.get(CollectedDialogue, task.dialogue_id)
    flags: dict[str, list[str]] = {}
    comments = []
    for answer in _answers(s, task):
        for position, kinds in answer["flags"].items():
            flags[position] = sorted(set(flags.get(position, [])) | set(kinds))
        if answer["comment"]:
            comments.append(answer["comment"])
    if flags:
        d.status = "rework"
        _new_task(s, "rework", d.id, round=task.round, note={"flags": flags, "comments": comments})
        return
    d.status = "label"
    for turn in range(len(_utterances(s, d.id)) // 2):
        _new_task(s, "label", d.id, turn=turn)


def _after_label(s: Session, task: Task, assignment_id: int) -> None:
    pending = s.scalar(
        select(func.count(Task.id)).where(
            Task.dialogue_id == task.dialogue_id, Task.kind == "label", Task.status != "done"
        )
    )
    if pending == 0:
        s.get(CollectedDialogue, task.dialogue_id).status = "done"


EFFECTS: dict[str, Callable[[Session, Task, int], None]] = {
    "annotate": _after_annotate,
    "proofread": _after_proofread,
    "rework": _after_rework,
    "validate": _after_validate,
    "label": _after_label,
}


# --------------------------------------------------------------------------- export and progress


def export_dialogues(factory: sessionmaker[Session]) -> list[Dialogue]:
    """Finished dialogues in the shared schema; each turn's label is the A.4 aggregate of its three votes.

    Turn t's RoTs are those the annotator grounded feedback t on; turn 0 (whose reply is the LM's elaboration
    question) takes the first round's RoTs, which were chosen while reading it.
    """
    out = []
    with factory() as s:
        finished = s.scalars(
            select(CollectedDialogue).where(CollectedDialogue.status == "done").order_by(CollectedDialogue.id)
        ).all()
        for d in finished:
            utterances = [u.text for u in d.utterances]
            rots_at = {u.position: list(u.rots) for u in d.utterances}
            labels = {
                t.turn: _answers(s, t)
                for t in s.scalars(select(Task).where(Task.dialogue_id == d.id, Task.kind == "label"))
            }
            n_turns = len(utterances) // 2
            turns = []
            for t in range(n_turns):
                votes = labels.get(t, [])
                turns.append(
                    Turn(
                        context=utterances[2 * t],
                        response=utterances[2 * t + 1],
                        rots=rots_at.get(2 * max(t, 1) + 1, []),
                        safety_label=aggregate_votes([v["label"] for v in votes]),
                        safety_annotations=[v["label"] for v in votes],
                        safety_annotation_reasons=[v["reason"] for v in votes],
                        response_id=t,
                        episode_done=t == n_turns - 1,
                    )
                )
            out.append(Dialogue(dialogue_id=d.id, turns=turns, source=d.situation.source, etc=d.situation.etc))
    return out


@dataclass
class Progress:
    dialogues: dict[str, int]
    tasks: dict[str, dict[str, int]]
    per_user: dict[str, int]
    label_alpha: float | None
    validation_alpha: float | None
    label_units: int
    revisions_per_dialogue: float


def progress(factory: sessionmaker[Session]) -> Progress:
    """Counts for the admin page, plus Krippendorff's alpha of the safety votes and of validators' flags."""
    with factory() as s:
        statuses = s.execute(select(CollectedDialogue.status, func.count()).group_by(CollectedDialogue.status))
        by_status = {status: n for status, n in statuses}
        tasks: dict[str, dict[str, int]] = {kind: {"open": 0, "done": 0} for kind in TASK_KINDS}
        counts = s.execute(select(Task.kind, Task.status, func.count()).group_by(Task.kind, Task.status))
        for kind, status, count in counts:
            tasks[kind][status] = count
        per_user = {
            name: n
            for name, n in s.execute(
                select(User.username, func.count(Assignment.id))
                .join(Assignment, Assignment.user_id == User.id)
                .where(Assignment.state == "submitted")
                .group_by(User.username)
            )
        }
        label_units: dict[int, list[str]] = {}
        validation_units: dict[int, list[bool]] = {}
        for task_id, kind, answer in s.execute(
            select(Task.id, Task.kind, Assignment.answer)
            .join(Assignment, Assignment.task_id == Task.id)
            .where(Assignment.state == "submitted", Task.kind.in_(("label", "validate")))
            .order_by(Assignment.id)
        ):
            if kind == "label":
                label_units.setdefault(task_id, []).append(answer["label"])
            else:
                validation_units.setdefault(task_id, []).append(bool(answer["flags"]))
        revisions = s.scalar(select(func.count(Revision.id))) or 0
        dialogues = s.scalar(select(func.count(CollectedDialogue.id))) or 0
    return Progress(
        dialogues={status: by_status.get(status, 0) for status in STATUSES},
        tasks=tasks,
        per_user=per_user,
        label_alpha=krippendorff_alpha_nominal(label_units.values()),
        validation_alpha=krippendorff_alpha_nominal(validation_units.values()),
        label_units=sum(1 for v in label_units.values() if len(v) >= 2),
        revisions_per_dialogue=revisions / dialogues if dialogues else 0.0,
    )
