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
def kjv_head(tmp_path_factory):
    """A function n → a file with the first n verses of the shipped King James Bible, in documents of
    100 verses."""

    def make(n: int) -> Path:
        path = tmp_path_factory.mktemp("corpus") / f"kjv-head-{n}.txt"
        with resources.files("plmkit").joinpath("resources/kjv.txt.gz").open("rb") as f:
            lines = [ln for ln in gzip.open(f, "rt", encoding="utf-8").read().splitlines() if ln.strip()][:n]
        path.write_text("".join(ln + ("\n\n" if (i + 1) % 100 == 0 else "\n") for i, ln in enumerate(lines)))
        return path

    return make


@pytest.fixture(scope="session")
def corpus(kjv_head) -> Path:
    """The first 1,500 verses of the shipped King James Bible."""
    return kjv_head(1500)


@pytest.fixture(scope="session")
def fits_one_batch():
    """A function (task model, batch, lr, steps=15) that trains the model on the one batch: its loss must
    fall well below where it starts."""

    def check(model, batch, lr: float, steps: int = 15) -> None:
        import torch

        opt = torch.optim.AdamW(model.parameters(), lr=lr)
        model.train()
        losses = []
        for _ in range(steps):
            loss = model(batch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.7 * losses[0], losses

    return check
