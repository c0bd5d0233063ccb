"""The offline dataset on disk: per-task buffers as memory-mapped TensorDicts plus a JSON manifest.

Layout of a dataset directory::

    manifest.json          family config, tasks, split, behaviour policy, seed, sizes, version,
                           a CRC-32 of every buffer file and of the manifest's own content
    train/rl/              RL buffers of the training tasks,        batch [num_train, rl_size]
    train/encoder/         encoder (context) buffers, same tasks,   batch [num_train, encoder_size]
    test/encoder/          context buffers of the held-out tasks,   batch [num_test, encoder_size]
                           (never trained on: only for the offline-context diagnostics)

Each buffer holds ``observation, action, reward, next/observation, terminated,
truncated, task``. Every problem found on load raises ``DatasetError`` naming the
file and what is wrong; the checksums make that true of any changed byte.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from tensordict import TensorDict

from smac_lightning.errors import DatasetError

FORMAT_VERSION = 2  # 2: checksums
MANIFEST = "manifest.json"
BUFFERS = ("train/rl", "train/encoder", "test/encoder")
FIELDS = ("observation", "action", "reward", ("next", "observation"), "terminated", "truncated", "task")


@dataclass
class OfflineDataset:
    manifest: dict
    train_rl: TensorDict
    train_encoder: TensorDict
    test_encoder: TensorDict

    @property
    def train_tasks(self) -> torch.Tensor:
        return torch.tensor(self.manifest["tasks"]["train"], dtype=torch.float32)

    @property
    def test_tasks(self) -> torch.Tensor:
        return torch.tensor(self.manifest["tasks"]["test"], dtype=torch.float32)


def save_dataset(path: Path, manifest: dict, buffers: dict[str, TensorDict]) -> None:
    """Write ``buffers`` (keyed as in ``BUFFERS``) and the manifest into the directory ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    for name in BUFFERS:
        buffers[name].memmap(path / name)
    write_manifest(path, manifest)


def write_manifest(path: Path, manifest: dict) -> None:
    """``manifest`` for the buffers now in ``path``, with their checksums and its own."""
    checksums = {str(f.relative_to(path)): _crc(f.read_bytes()) for name in BUFFERS for f in _files(path / name)}
    manifest = {**manifest, "format_version": FORMAT_VERSION, "checksums": checksums}
    manifest["manifest_checksum"] = _crc(_canonical(manifest))
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2))


def _files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.is_file())


def _crc(data: bytes) -> str:
    return f"{zlib.crc32(data):08x}"


def _canonical(manifest: dict) -> bytes:
    """The manifest's content without its own checksum, independent of formatting."""
    return json.dumps({k: v for k, v in manifest.items() if k != "manifest_checksum"}, sort_keys=True).encode()


def load_dataset(path: str | Path, family_config: dict | None = None) -> OfflineDataset:
    """Load and validate a dataset; ``family_config`` (if given) must match the manifest's."""
    path = Path(path)
    manifest = _read_manifest(path)
    if family_config is not None and manifest["family"] != family_config:
        raise DatasetError(
            f"{path / MANIFEST}: the dataset was made for task family {manifest['family']}, "
            f"but the config asks for {family_config}. Point data.dataset_dir at another folder "
            f"(it is generated on first use) or delete {path} to regenerate it."
        )
    buffers = {name: _read_buffer(path, name, manifest) for name in BUFFERS}
    return OfflineDataset(manifest, buffers["train/rl"], buffers["train/encoder"], buffers["test/encoder"])


def _read_manifest(path: Path) -> dict:
    if not path.is_dir():
        raise DatasetError(f"{path}: no dataset directory here (expected a folder with {MANIFEST})")
    file = path / MANIFEST
    if not file.is_file():
        raise DatasetError(f"{file}: manifest missing; {path} is not a smac_lightning dataset")
    try:
        manifest = json.loads(file.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{file}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise DatasetError(f"{file}: not a manifest (a JSON object was expected)")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise DatasetError(
            f"{file}: dataset format version {version!r}, this smac_lightning reads version "
            f"{FORMAT_VERSION}; regenerate it with `python -m smac_lightning data make --config ... --overwrite`"
        )
    if manifest.get("manifest_checksum") != _crc(_canonical(manifest)):
        raise DatasetError(f"{file}: its content does not match its checksum: the file is corrupted; regenerate the dataset")
    missing = {"family", "tasks", "sizes", "obs_dim", "act_dim", "checksums"} - manifest.keys()
    if missing:
        raise DatasetError(f"{file}: manifest lacks {sorted(missing)}")
    return manifest


def _check_files(path: Path, name: str, manifest: dict) -> None:
    """Every file of buffer ``name`` present, unchanged since it was written, and no other."""
    expected = {k: v for k, v in manifest["checksums"].items() if k.startswith(name + "/")}
    found = {str(f.relative_to(path)) for f in _files(path / name)}
    for missing in sorted(set(expected) - found):
        raise DatasetError(f"{path / missing}: missing from the dataset")
    for extra in sorted(found - set(expected)):
        raise DatasetError(f"{path / extra}: not part of the dataset as written")
    for relative, crc in expected.items():
        if _crc((path / relative).read_bytes()) != crc:
            raise DatasetError(f"{path / relative}: its bytes do not match the manifest's checksum: the file is corrupted")


def _read_buffer(path: Path, name: str, manifest: dict) -> TensorDict:
    where = path / name
    if not (where / "meta.json").is_file():
        raise DatasetError(f"{where}: buffer missing (expected a memory-mapped TensorDict)")
    _check_files(path, name, manifest)
    try:
        td = TensorDict.load_memmap(where)
    except Exception as err:  # a truncated or foreign file: report where, not torch's internals
        raise DatasetError(f"{where}: cannot be read as a memory-mapped TensorDict ({err})") from None
    split, kind = name.split("/")
    expected_batch = (len(manifest["tasks"][split]), manifest["sizes"][kind])
    if tuple(td.batch_size) != expected_batch:
        raise DatasetError(
            f"{where}: buffer has shape {tuple(td.batch_size)} (tasks, transitions) but the manifest "
            f"says {expected_batch}"
        )
    last_dims = {
        "observation": manifest["obs_dim"],
        ("next", "observation"): manifest["obs_dim"],
        "action": manifest["act_dim"],
        "reward": 1,
        "terminated": 1,
        "truncated": 1,
        "task": 1,
    }
    for key in FIELDS:
        label = "/".join(key) if isinstance(key, tuple) else key
        if key not in td.keys(include_nested=True):
            raise DatasetError(f"{where}: field '{label}' missing")
        shape = tuple(td.get(key).shape)
        if shape != (*expected_batch, last_dims[key]):
            raise DatasetError(f"{where}: field '{label}' has shape {shape}, expected {(*expected_batch, last_dims[key])}")
    for key in ("observation", "action", "reward", ("next", "observation")):
        values = td.get(key)
        if not torch.isfinite(values).all():
            bad = (~torch.isfinite(values)).flatten(1).any(-1).nonzero().flatten().tolist()
            label = "/".join(key) if isinstance(key, tuple) else key
            raise DatasetError(f"{where}: field '{label}' has NaN or infinite values (tasks {bad[:10]})")
    return td.clone()  # into memory: sampling gathers at random, which a memmap would serve from disk

