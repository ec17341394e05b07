"""Shared pytest fixtures."""

import gzip
from importlib import resources
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real corpora and tokenizers beside the repo (`../shared/data`); tests needing them skip without."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip("../shared/data (real corpora) is not beside the repo")
    return path


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """The first 1,500 verses of the shipped King James Bible, split into documents of 100 verses."""
    path = tmp_path_factory.mktemp("corpus") / "kjv-head.txt"
    with resources.files("plmkit").joinpath("resources/kjv.txt.gz").open("rb") as f:
        lines = [ln for ln in gzip.open(f, "rt", encoding="utf-8").read().splitlines() if ln.strip()][:1500]
    path.write_text("".join(ln + ("\n\n" if (i + 1) % 100 == 0 else "\n") for i, ln in enumerate(lines)))
    return path
