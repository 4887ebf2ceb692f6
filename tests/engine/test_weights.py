"""Weights files: resolution (paths, the per-user models folder, the environment, the
bundled file), safe reading (no unpickling, finite values, keys and shapes) and hashing."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path

import platformdirs
import pytest
import torch

from helpers.networks import seeded_model
from medfuse.engine import load_model
from medfuse.engine import weights as w
from medfuse.errors import UsageError, WeightsError

SRC = Path(__file__).resolve().parents[2] / "src" / "medfuse"


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty per-user models folder, and no $MEDFUSE_WEIGHTS."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv(w.MODELS_ENV, str(folder))
    monkeypatch.delenv(w.WEIGHTS_ENV, raising=False)
    return folder


def save_state(path: Path, seed: int = 0) -> Path:
    torch.save(seeded_model(seed).state_dict(), path)
    return path


# -- resolution --------------------------------------------------------------------------------
def test_models_dir_default_is_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(w.MODELS_ENV, raising=False)
    assert w.models_dir() == Path(platformdirs.user_data_dir("medfuse", appauthor=False)) / "models"


def test_user_models_lists_pt_files_sorted(models: Path) -> None:
    assert w.user_models() == []
    for name in ("zeta.pt", "alpha.pt", "notes.txt", "old.pth"):
        (models / name).write_bytes(b"x")
    (models / "dir.pt").mkdir()
    assert w.user_models() == [("alpha", models / "alpha.pt"), ("zeta", models / "zeta.pt")]


def test_user_models_missing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(w.MODELS_ENV, str(tmp_path / "nowhere"))
    assert w.user_models() == []


@pytest.mark.parametrize("name", ["mine", "mine.pt"])
def test_bare_name_resolves_in_models_folder(models: Path, name: str) -> None:
    target = save_state(models / "mine.pt")
    assert w.resolve_weights(name) == target
    assert load_model(name, "cpu").weights_path == target


def test_existing_path_wins_over_a_model_name(models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_state(models / "mine.pt")
    monkeypatch.chdir(tmp_path)
    local = save_state(tmp_path / "mine.pt", seed=1)
    assert w.resolve_weights("mine.pt") == Path("mine.pt")
    assert w.resolve_weights("mine") == models / "mine.pt"  # no file called "mine" here
    assert w.resolve_weights(local) == local


def test_unknown_name_lists_available(models: Path) -> None:
    (models / "b.pt").write_bytes(b"x")
    (models / "a.pt").write_bytes(b"x")
    with pytest.raises(UsageError, match=r"'nope' not found.*available: a, b\)") as exc:
        w.resolve_weights("nope")
    assert str(models) in str(exc.value) and "\n" not in str(exc.value)
    (models / "a.pt").unlink()
    (models / "b.pt").unlink()
    with pytest.raises(UsageError, match="available: none"):
        w.resolve_weights("nope")


@pytest.mark.parametrize("text", ["sub/x.pt", "x.pth", "~/x.pt", "notes.txt", "v1.2"])
def test_not_a_name_is_a_missing_path(models: Path, text: str) -> None:
    assert not w.is_model_name(text) and not w.is_model_name("..")
    with pytest.raises(UsageError, match="weights file not found"):
        w.resolve_weights(text)


def test_folder_is_not_weights(models: Path) -> None:
    with pytest.raises(UsageError, match="is not a file"):
        w.resolve_weights(models)


def test_environment_then_bundled(models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = save_state(tmp_path / "env.pt")
    monkeypatch.setenv(w.WEIGHTS_ENV, str(env_file))
    assert w.resolve_weights() == env_file and w.resolve_weights("") == env_file
    save_state(models / "named.pt")
    monkeypatch.setenv(w.WEIGHTS_ENV, "named")  # a name works there too
    assert w.resolve_weights() == models / "named.pt"
    monkeypatch.delenv(w.WEIGHTS_ENV)
    monkeypatch.setattr(w, "bundled_weights_path", lambda: tmp_path / "bundled.pt")
    assert w.resolve_weights() == tmp_path / "bundled.pt"
    monkeypatch.setattr(w, "bundled_weights_path", lambda: None)
    with pytest.raises(WeightsError, match="no bundled weights.*--weights PATH or NAME"):
        w.resolve_weights()


def test_bundled_path_is_the_shipped_file() -> None:
    path = w.bundled_weights_path()
    if path is None:
        pytest.skip("this build carries no bundled weights")
    assert path.name == w.BUNDLED_NAME and path.is_file()


# -- reading ------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this would create ``marker`` (what a malicious weights file does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("via", ["torch.save", "pickle"])
def test_pickle_payload_is_refused_and_never_run(tmp_path: Path, via: str) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    payload = {"conv.weight": torch.zeros(1), "x": _Payload(marker)}
    if via == "torch.save":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload))
    with pytest.raises(WeightsError) as exc:
        w.read_state_dict(evil)
    msg = str(exc.value)
    assert not marker.exists()
    assert msg.startswith(f"cannot read weights {evil}: it holds Python objects")
    assert "\n" not in msg and "\x1b" not in msg
    assert "weights_only` set to `False" not in msg  # torch's advice to turn safety off


def test_torch_errors_become_one_plain_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def coloured(*_: object, **__: object) -> None:
        raise RuntimeError("\x1b[31mPytorchStreamReader failed\x1b[0m reading zip\n\nmore detail")

    monkeypatch.setattr(torch, "load", coloured)
    with pytest.raises(WeightsError) as exc:
        w.read_state_dict(tmp_path / "x.pt")
    assert str(exc.value) == f"cannot read weights {tmp_path / 'x.pt'}: PytorchStreamReader failed reading zip"


def test_every_torch_load_in_engine_and_model_is_weights_only() -> None:
    for path in [*(SRC / "engine").glob("*.py"), *(SRC / "model").glob("*.py")]:
        for call in re.findall(r"torch\.load\([^)]*\)", path.read_text()):
            assert "weights_only=True" in call, f"{path.name}: {call}"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused(tmp_path: Path, bad: float) -> None:
    state = seeded_model().state_dict()
    state["sft.SFT2.weight"][0, 0, 0, 0] = bad
    path = tmp_path / "diverged.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"diverged\.pt holds non-finite weights .* 1 tensors: sft\.SFT2\.weight"):
        load_model(path, "cpu")


def test_checkpoint_forms_and_prefix(tmp_path: Path) -> None:
    state = seeded_model().state_dict()
    for name, obj in {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state, "step": 7},
        "dp": {f"module.{k}": v for k, v in state.items()},
    }.items():
        torch.save(obj, tmp_path / f"{name}.pt")
        got = w.read_state_dict(tmp_path / f"{name}.pt")
        assert got.keys() == state.keys(), name


def test_wrong_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="cannot read weights"):
        w.read_state_dict(junk)
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="holds no state dict"):
        w.read_state_dict(tmp_path / "list.pt")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "foo.pt")
    with pytest.raises(WeightsError, match="missing 77.*unexpected 1: foo"):
        load_model(tmp_path / "foo.pt", "cpu")
    state = seeded_model().state_dict()
    state["decoder1.conv.bias"] = torch.zeros(2)
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(WeightsError, match=r"wrong shape 1: decoder1\.conv\.bias \(2,\) != \(1,\)"):
        load_model(tmp_path / "shape.pt", "cpu")


def test_sha256_of(tmp_path: Path) -> None:
    data = os.urandom(3 << 20 | 5)  # several read chunks and a partial one
    (tmp_path / "f").write_bytes(data)
    assert w.sha256_of(tmp_path / "f") == hashlib.sha256(data).hexdigest()
