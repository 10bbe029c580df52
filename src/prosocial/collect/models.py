"""Database tables of the collection tool; the schema itself is created by the shipped alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Setting(Base):
    """Key/value settings that must survive restarts, e.g. the cookie-signing secret."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="annotator")  # "annotator" | "admin"
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Situation(Base):
    """A problematic situation (paper §3.1) with its candidate RoTs; `as_is` keeps SBIC posts verbatim (A.2)."""

    __tablename__ = "situations"
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    rots: Mapped[list[str]] = mapped_column(JSON, default=list)
    as_is: Mapped[bool] = mapped_column(Boolean, default=False)
    etc: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("source", "text", name="uq_situation_source_text"),)


class CollectedDialogue(Base):
    """A dialogue under collection; `status` is its place in the pipeline (see `pipeline.STATUSES`)."""

    __tablename__ = "dialogues"
    id: Mapped[int] = mapped_column(primary_key=True)
    situation_id: Mapped[int] = mapped_column(ForeignKey("situations.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    rounds: Mapped[int] = mapped_column(Integer, default=2)
    validation_round: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    situation: Mapped[Situation] = relationship()
    utterances: Mapped[list[Utterance]] = relationship(order_by="Utterance.position", back_populates="dialogue")


class Utterance(Base):
    """Utterance `position` (0-based); even positions are the problematic speaker's, odd ones the prosocial one's.

    `rots` is filled on annotator-written feedback; `draft` keeps the LM's original text for auditing edits.
    """

    __tablename__ = "utterances"
    id: Mapped[int] = mapped_column(primary_key=True)
    dialogue_id: Mapped[int] = mapped_column(ForeignKey("dialogues.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(16))  # "lm" | "annotator"
    draft: Mapped[str] = mapped_column(Text, default="")
    rots: Mapped[list[str]] = mapped_column(JSON, default=list)
    dialogue: Mapped[CollectedDialogue] = relationship(back_populates="utterances")
    __table_args__ = (UniqueConstraint("dialogue_id", "position", name="uq_utterance_position"),)


class Revision(Base):
    """One proofreading edit, kept so every change to a dialogue can be traced to a submission."""

    __tablename__ = "revisions"
    id: Mapped[int] = mapped_column(primary_key=True)
    utterance_id: Mapped[int] = mapped_column(ForeignKey("utterances.id"), index=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), index=True)
    before: Mapped[str] = mapped_column(Text)
    after: Mapped[str] = mapped_column(Text)


class Task(Base):
    """A unit of work needing `needed` distinct annotators; `claimed` counts live leases, `done` submissions.

    The unique key makes creating a task idempotent, so a pipeline step that runs twice creates nothing twice.
    """

    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)  # annotate | proofread | rework | validate | label
    dialogue_id: Mapped[int] = mapped_column(ForeignKey("dialogues.id"), index=True)
    round: Mapped[int] = mapped_column(Integer, default=0)
    turn: Mapped[int] = mapped_column(Integer, default=0)
    needed: Mapped[int] = mapped_column(Integer, default=1)
    claimed: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open | done
    note: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    dialogue: Mapped[CollectedDialogue] = relationship()
    __table_args__ = (UniqueConstraint("kind", "dialogue_id", "round", "turn", name="uq_task_identity"),)


class Assignment(Base):
    """A task leased to one annotator; one row per (task, user), so nobody does the same task twice."""

    __tablename__ = "assignments"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="active")  # active | submitted
    answer: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    assigned_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    task: Mapped[Task] = relationship()
    user: Mapped[User] = relationship()
    __table_args__ = (UniqueConstraint("task_id", "user_id", name="uq_assignment_task_user"),)
