"""The user's documents stay true to the code: their links resolve inside the repository and every
model option they name exists (or is one that moved, which the CLI explains)."""

import re
from pathlib import Path

from smac_lightning.algos import PEARL, SMAC
from smac_lightning.checkpoints import MOVED, REMOVED
from smac_lightning.options_help import dotted_options

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
NOT_OPTIONS = {"class_path", "help", "lrr"}  # the config's class key, the help flag, metrics.md's example of a typo


def test_every_link_resolves_inside_the_repository():
    broken = []
    for doc in DOCUMENTS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            path = (doc.parent / target).resolve()
            if target.startswith(("http:", "https:")) or not path.is_relative_to(ROOT) or not path.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_every_model_option_the_documents_and_configs_name_exists():
    known = set(dotted_options(SMAC)) | set(dotted_options(PEARL))
    known |= {name.split(".")[0] for name in known} | set(MOVED) | set(REMOVED) | NOT_OPTIONS
    stale = []
    for doc in [*DOCUMENTS, *sorted((ROOT / "conf").glob("*.yaml"))]:
        for name in re.findall(r"(?<![\w/])model\.([a-z_]+(?:\.[a-z_]+)?)", doc.read_text()):
            if name not in known:
                stale.append(f"{doc.relative_to(ROOT)}: model.{name}")
    assert not stale, stale
