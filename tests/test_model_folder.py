"""Saved model folders name their backend (prosocial.json): load_detector / load_generator take a folder, old
folders are known by their settings file, and unknown keys or a folder of the wrong kind are errors."""

from __future__ import annotations

import json

import pytest

from prosocial.canary import load_detector
from prosocial.canary.base import LEGACY_FOLDERS as DETECTOR_FOLDERS
from prosocial.canary.generative import GenerativeCanary
from prosocial.errors import ModelError
from prosocial.model_folder import FOLDER_FILE, folder_backend, read_model_config, write_backend
from prosocial.prost import load_generator
from prosocial.prost.base import LEGACY_FOLDERS as GENERATOR_FOLDERS
from prosocial.prost.seq2seq import Prost
from prosocial.resources import RESOURCES


def test_a_folder_is_loaded_by_the_backend_it_names_with_the_callers_settings(tmp_path):
    write_backend(tmp_path, "generative")
    assert json.loads((tmp_path / FOLDER_FILE).read_text()) == {"backend": "generative"}
    detector = load_detector(tmp_path, batch_size=2)  # cheap: no weights are read until first use
    assert isinstance(detector, GenerativeCanary) and detector.model_dir == tmp_path and detector.batch_size == 2
    write_backend(tmp_path, "prost")
    generator = load_generator(str(tmp_path), variant="response")
    assert isinstance(generator, Prost) and generator.variant == "response"


def test_the_shipped_folders_name_their_backends():
    assert load_detector(str(RESOURCES / "canary-mini")).name == "canary-mini"
    assert load_generator(RESOURCES / "prost-mini").name == "prost-mini"
    assert load_detector("canary-mini").name == "canary-mini"  # a registry name is still a name


@pytest.mark.parametrize(("files", "legacy", "backend"), [
    (["canary.json", "config.json"], DETECTOR_FOLDERS, "generative"),
    (["config.json", "head.safetensors", "encoder"], DETECTOR_FOLDERS, "canary-mini"),
    (["config.json"], DETECTOR_FOLDERS, "generative"),  # a bare fine-tuned folder, as `eval canary` took it
    (["prost.json", "config.json"], GENERATOR_FOLDERS, "prost"),
    (["prost-mini.json", "prost-mini-lora.gguf"], GENERATOR_FOLDERS, "prost-mini"),
    (["config.json"], GENERATOR_FOLDERS, "prost"),
])
def test_folders_saved_before_prosocial_json_are_known_by_their_settings_file(tmp_path, files, legacy, backend):
    for name in files:
        (tmp_path / name).write_text("{}")
    assert folder_backend(tmp_path, legacy) == backend


def test_bad_folders_are_errors_that_name_them(tmp_path):
    with pytest.raises(ModelError, match="not a saved model folder"):
        load_detector(tmp_path)
    with pytest.raises(ModelError, match="model directory not found"):
        load_generator("runs/missing")
    (tmp_path / FOLDER_FILE).write_text('{"backend": "generative", "kind": "canary"}')
    with pytest.raises(ModelError, match=r"prosocial.json: unknown setting\(s\) \['kind'\]"):
        load_detector(tmp_path)
    (tmp_path / FOLDER_FILE).write_text("{}")
    with pytest.raises(ModelError, match='expected {"backend": NAME}'):
        load_detector(tmp_path)
    write_backend(tmp_path, "prost")
    with pytest.raises(ModelError, match="holds a 'prost' model, not a detector"):
        load_detector(tmp_path)


def test_unknown_settings_are_errors_and_old_keys_still_read(tmp_path):
    (tmp_path / "prost.json").write_text('{"variant": "response", "max_turn": 2}')
    with pytest.raises(ModelError, match=r"prost.json: unknown setting\(s\) \['max_turn'\]"):
        Prost(tmp_path)
    (tmp_path / "prost.json").write_text('{"kind": "prost", "variant": "rot-response", "max_turns": 2}')
    assert Prost(tmp_path).variant == "rot-response"  # "kind" is what older folders wrote
    (tmp_path / "x.json").write_text("[1]")
    with pytest.raises(ModelError, match="expected a JSON object"):
        read_model_config(tmp_path / "x.json", {"a"})
    assert read_model_config(tmp_path / "absent.json", {"a"}) == {}
