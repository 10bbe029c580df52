"""The shared data layout a default Canary-mini build reads (`prosocial train canary-mini`)."""

from __future__ import annotations

from prosocial.canary.mini_train import PROSOCIAL_FILES, default_prosocial_files


def test_the_default_build_reads_the_prosocialdialog_files_the_folder_holds(shared_data, tmp_path):
    assert default_prosocial_files(shared_data) == [shared_data / name for name in PROSOCIAL_FILES]
    (tmp_path / "prosocial_dialog_partial").mkdir()
    (tmp_path / "prosocial_dialog_partial" / "train.json").write_text("[]")
    assert default_prosocial_files(tmp_path) == [tmp_path / "prosocial_dialog_partial" / "train.json"]
