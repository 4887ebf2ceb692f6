"""docs/tools/combine_weights.py: affine combinations of weights files.

The model card's step past a fine-tune is made with this script, so a wrong sum, a half-
written file or a combination that lets the authors' checkpoint in would put a false
claim in the card."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("combine_weights_tool",
                                                  ROOT / "docs" / "tools" / "combine_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two GeSeNet state dicts that share every integer tensor (as two fine-tunes do)."""
    import torch

    from medfuse.model import GeSeNet

    folder = tmp_path_factory.mktemp("runs")
    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        path = folder / f"run{seed}.pt"
        torch.save(GeSeNet().state_dict(), path)
        paths.append(path)
    return paths[0], paths[1]


def test_parse_term(tool) -> None:
    assert tool.parse_term("a=b.pt=-0.5") == (Path("a=b.pt"), -0.5)
    for bad in ("run.pt", "=1", "run.pt=x", "run.pt=nan"):
        with pytest.raises(ValueError):
            tool.parse_term(bad)


def test_extrapolation_is_the_affine_combination(tool, two_runs, tmp_path: Path) -> None:
    import torch

    a, b = two_runs
    out = tmp_path / "ext.pt"
    assert tool.main([str(out), f"{a}=-0.5", f"{b}=1.5"]) == 0
    sa, sb, so = (torch.load(p, weights_only=True) for p in (a, b, out))
    name = "decoder2.conv.weight"
    assert torch.allclose(so[name], -0.5 * sa[name] + 1.5 * sb[name], atol=1e-6)
    assert not torch.equal(so[name], sb[name])
    assert so["decoder1.bn.num_batches_tracked"].dtype == torch.int64
    # the result loads strictly into the network
    from medfuse.engine import load_model

    load_model(out, "cpu")


def test_refusals_leave_no_file(tool, two_runs, tmp_path: Path, capsys) -> None:
    a, b = two_runs
    out = tmp_path / "soup.pt"
    assert tool.main([str(out), f"{a}=0.5", f"{b}=0.6"]) == 2  # sums to 1.1
    assert "sum to 1.1" in capsys.readouterr().err
    assert tool.main([str(out), f"{a}=0.5", f"{tmp_path / 'missing.pt'}=0.5"]) == 2
    assert not out.exists()
    assert tool.main([str(a), f"{a}=0.5", f"{b}=0.5", "--force"]) == 2  # never an input
    assert "error:" in capsys.readouterr().err
    assert tool.main([str(out), f"{a}=0.5", f"{b}=0.5"]) == 0
    assert tool.main([str(out), f"{a}=0.5", f"{b}=0.5"]) == 2  # exists, no --force
    assert [p.name for p in tmp_path.iterdir()] == ["soup.pt"]


def test_refuses_other_networks(tool, two_runs, tmp_path: Path, capsys) -> None:
    import torch

    a, _ = two_runs
    other = tmp_path / "other.pt"
    torch.save({"x": torch.zeros(3)}, other)
    assert tool.main([str(tmp_path / "out.pt"), f"{a}=0.5", f"{other}=0.5"]) == 2
    assert f"{other} is not a GeSeNet state dict" in capsys.readouterr().err


def test_refuses_the_authors_checkpoint(tool, two_runs, reference_checkpoint: Path,
                                        tmp_path: Path, capsys) -> None:
    a, _ = two_runs
    out = tmp_path / "out.pt"
    assert tool.main([str(out), f"{a}=0.5", f"{reference_checkpoint}=0.5"]) == 2
    assert "authors' checkpoint" in capsys.readouterr().err
    assert not out.exists()
