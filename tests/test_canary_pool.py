"""The unlabelled distillation pool: train-split replies only, none a labelled context, replies before small talk."""

import pytest

from prosocial.canary.pool import POOL_SOURCE, unlabelled_pool
from prosocial.data.adapters import load_benchmark


def _keys(examples, max_turns=4):
    return {"\n".join(e.context[-max_turns:]) for e in examples}


def test_the_pool_holds_train_replies_never_a_labelled_or_dev_context(shared_data):
    labelled = load_benchmark("diasafety", "train", root=shared_data, limit=200)
    pool = unlabelled_pool(shared_data, 300, ("dailydialog",), labelled)
    assert len(pool) == 300 == len(_keys(pool))
    assert all(e.source == POOL_SOURCE and e.safety_label is None for e in pool)
    assert not _keys(pool) & _keys(labelled)
    dev = [e for name in ("prosocial_dialog", "diasafety", "dailydialog")
           for e in load_benchmark(name, "dev", root=shared_data)]
    dev_replies = {"\n".join([*e.context, e.response][-4:]) for e in dev if e.response}
    assert not _keys(pool) & (dev_replies | _keys(dev))
    train_replies = {"\n".join([*e.context, e.response][-4:])
                     for name in ("prosocial_dialog", "diasafety")
                     for e in load_benchmark(name, "train", root=shared_data) if e.response}
    assert _keys(pool) <= train_replies  # 300 fit in the replies of the labelled sources: no small talk yet


def test_small_talk_fills_the_pool_after_the_replies_and_the_sample_is_seeded(shared_data):
    replies = unlabelled_pool(shared_data, 10**6, ())
    pool = unlabelled_pool(shared_data, len(replies) + 50, ("dailydialog",))
    assert _keys(pool[: len(replies)]) == _keys(replies) and len(pool) == len(replies) + 50
    assert [e.context for e in unlabelled_pool(shared_data, 40, ())] == [e.context for e in unlabelled_pool(
        shared_data, 40, ())]
    assert unlabelled_pool(shared_data, 0, ("dailydialog",)) == []


def test_a_pool_without_a_teacher_is_refused_before_any_data_is_read(tmp_path):
    from prosocial.canary.mini_train import MiniTrainSettings, train_canary_mini

    with pytest.raises(ValueError, match="needs a teacher"):
        train_canary_mini(tmp_path / "out", root=tmp_path / "no-data", settings=MiniTrainSettings(pool_size=10))
