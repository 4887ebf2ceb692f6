"""The folded fast path equals the plain dense hard-mask network (random seeded weights).

Tolerance 1e-4 max abs on the fused luminance (the issue's contract); masks must be
identical. Sizes are small so the whole file runs in seconds on 2 CPU cores.
"""

from __future__ import annotations

import pytest
import torch

from medfuse import fastpath
from medfuse.engine import build_model
from medfuse.fastpath import FastGeSeNet, fast_inference
from medfuse.model import GeSeNet

TOL = 1e-4


def seeded_model(seed: int = 1234) -> GeSeNet:
    torch.manual_seed(seed)
    return build_model()


def inputs(n: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, h, w, generator=g), torch.rand(n, 1, h, w, generator=g)


def assert_same(fast_out, ref_out) -> None:  # type: ignore[no-untyped-def]
    assert (fast_out.fused.float() - ref_out.fused).abs().max().item() <= TOL
    assert torch.equal(fast_out.mask_mri.float(), ref_out.mask_mri)
    assert torch.equal(fast_out.mask_functional.float(), ref_out.mask_functional)
    assert (fast_out.body_mri.float() - ref_out.body_mri).abs().max().item() <= TOL
    assert (fast_out.body_functional.float() - ref_out.body_functional).abs().max().item() <= TOL


@pytest.mark.parametrize(
    "channels_last,body,sparse",
    [
        (True, "stacked", "never"),
        (True, "split", "never"),
        (False, "stacked", "never"),
        (True, "stacked", "always"),
        (False, "split", "always"),
    ],
)
def test_fast_equals_dense(channels_last: bool, body: str, sparse: str) -> None:
    model = seeded_model()
    a, b = inputs(2, 32, 46)
    fast = FastGeSeNet(model, channels_last=channels_last, body=body, sparse=sparse)  # type: ignore[arg-type]
    with torch.inference_mode():
        assert_same(fast.fuse(a, b), model.fuse(a, b))


def test_reference_like_masks_take_the_uniform_shortcut() -> None:
    """A functional branch whose spatial mask is all ones (as the reference checkpoint's)
    runs plain convolutions and still matches."""
    model = seeded_model(7)
    with torch.no_grad():
        # Make the functional branch's principal logit dominate everywhere.
        model.vis_rmm.spa_mask[5].bias.copy_(torch.tensor([-1e4, 1e4]))
    a, b = inputs(1, 40, 40, seed=3)
    fast = FastGeSeNet(model, sparse="never")
    with torch.inference_mode():
        out = fast.fuse(a, b)
        assert_same(out, model.fuse(a, b))
    assert out.mask_functional.min().item() == 1.0
    assert fast.last_body_paths["functional"] == "uniform"


def set_channel_masks(model: GeSeNet, sparse_per_layer: list[list[int]]) -> None:
    """Force each masked layer's sparse channels (both branches)."""
    with torch.no_grad():
        for rmm in (model.inf_rmm, model.vis_rmm):
            logits = torch.zeros_like(rmm.body.ch_mask)
            logits[..., 0] = 1.0
            for layer, chans in enumerate(sparse_per_layer):
                for c in chans:
                    logits[0, c, layer] = torch.tensor([0.0, 1.0])
            rmm.body.ch_mask.copy_(logits)


ALL = list(range(32))


@pytest.mark.parametrize(
    "pattern",
    [
        [[], [], [], []],  # all dense
        [ALL, ALL, ALL, ALL],  # all sparse
        [[], ALL, [3, 5, 30], []],  # all dense -> all sparse -> mixed -> all dense
        [ALL, [], ALL, [0]],
    ],
)
@pytest.mark.parametrize("body,sparse", [("stacked", "never"), ("split", "never"), ("stacked", "always")])
def test_extreme_channel_masks(pattern: list[list[int]], body: str, sparse: str) -> None:
    """Layers whose channels are all dense or all sparse (trained masks may end there)."""
    model = seeded_model(3)
    set_channel_masks(model, pattern)
    a, b = inputs(1, 32, 46, seed=8)
    fast = FastGeSeNet(model, body=body, sparse=sparse)  # type: ignore[arg-type]
    with torch.inference_mode():
        out = fast.fuse(a, b)
        assert_same(out, model.fuse(a, b))
    assert 0 < out.mask_mri.mean().item() < 1  # the masked (non-uniform) code path ran


def disk_mask(n: int, h: int, w: int, radius: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    inside = ((yy - h / 3) ** 2 + (xx - w / 4) ** 2) <= radius**2
    return inside.float().expand(n, 1, h, w).contiguous()


@pytest.mark.parametrize("radius", [0.0, 6.0, 20.0, 1e9])
@pytest.mark.parametrize("sparse", ["never", "always"])
def test_body_with_given_spatial_mask(radius: float, sparse: str) -> None:
    """The masked body on masks the random network would not produce: empty, a small
    blob (most blocks inactive), a large one, and full."""
    model = seeded_model(5)
    rmm = model.inf_rmm
    torch.manual_seed(9)
    e = torch.relu(torch.randn(2, 32, 64, 80))
    spa = disk_mask(2, 64, 80, radius)
    fast = FastGeSeNet(model, sparse=sparse, sparse_gap=4)  # type: ignore[arg-type]
    with torch.inference_mode():
        ref = rmm.body(e, spa, True, model.tau)
        got = fast._body(fast.inf, fast._prep(e), fast._prep(spa), "mri")
    assert (got - ref).abs().max().item() <= TOL
    if sparse == "always" and 0 < radius < 1e9:
        assert fast.last_body_paths["mri"].startswith("box-sparse")


def test_box_sparse_several_bands_and_borders() -> None:
    """Per-sample masks: two blobs far apart (two bands), and one in a corner (windows
    clipped at the image border)."""
    model = seeded_model(6)
    e = torch.relu(torch.randn(2, 32, 64, 72))
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(72), indexing="ij")
    spa = torch.zeros(2, 1, 64, 72)
    spa[0, 0] = (((yy - 8) ** 2 + (xx - 20) ** 2) <= 25).float()
    spa[0, 0] += (((yy - 50) ** 2 + (xx - 60) ** 2) <= 16).float()
    spa[1, 0] = ((yy < 7) & (xx > 60)).float()
    fast = FastGeSeNet(model, sparse="always", sparse_gap=4)
    with torch.inference_mode():
        boxes, area = fast._sparse_boxes(fast._prep(spa))
        ref = model.inf_rmm.body(e, spa, True, model.tau)
        got = fast._body(fast.inf, fast._prep(e), fast._prep(spa), "mri")
    assert len(boxes) == 3 and area < 0.1
    assert (got - ref).abs().max().item() <= TOL


def test_sparse_auto_threshold() -> None:
    model = seeded_model(5)
    e = torch.relu(torch.randn(1, 32, 64, 64))
    fast = FastGeSeNet(model, sparse="auto", sparse_max_area=0.25)
    with torch.inference_mode():
        fast._body(fast.inf, fast._prep(e), fast._prep(disk_mask(1, 64, 64, 5.0)), "mri")
        assert fast.last_body_paths["mri"].startswith("box-sparse")
        half = torch.zeros(1, 1, 64, 64)
        half[..., :40, :] = 1  # a box over 62% of the image
        fast._body(fast.inf, fast._prep(e), fast._prep(half), "mri")
        assert fast.last_body_paths["mri"] == fast.body_mode


def test_pooled_override_matches() -> None:
    model = seeded_model()
    a, b = inputs(1, 32, 36, seed=4)
    pooled = (torch.rand(1, 32, 1, 1), torch.rand(1, 32, 1, 1))
    fast = fast_inference(model)
    assert fast is not None
    with torch.inference_mode():
        assert_same(fast.fuse(a, b, pooled=pooled), model.fuse(a, b, pooled=pooled))
        for got, ref in zip(fast.body_features(a, b), model.body_features(a, b)):
            assert (got - ref).abs().max().item() <= TOL


def test_deterministic() -> None:
    model = seeded_model()
    a, b = inputs(2, 32, 32, seed=5)
    fast = FastGeSeNet(model)
    with torch.inference_mode():
        first = fast.fuse(a, b)
        second = fast.fuse(a, b)
    assert torch.equal(first.fused, second.fused)
    assert torch.equal(first.mask_mri, second.mask_mri)


def test_odd_size_rejected() -> None:
    fast = FastGeSeNet(seeded_model())
    a, b = inputs(1, 31, 32)
    with pytest.raises(ValueError, match="even"):
        fast.fuse(a, b)


def test_cache_reuses_and_invalidates() -> None:
    model = seeded_model()
    a, b = inputs(1, 32, 32, seed=6)
    first = fast_inference(model)
    assert fast_inference(model) is first
    # In-place change (what an optimizer step does): the folded weights must follow.
    with torch.no_grad():
        model.decoder2.conv.weight.mul_(1.5)
    second = fast_inference(model)
    assert second is not first
    with torch.inference_mode():
        assert_same(second.fuse(a, b), model.fuse(a, b))
    # load_state_dict copies in place too.
    other = seeded_model(99)
    model.load_state_dict(other.state_dict())
    third = fast_inference(model)
    assert third is not second
    with torch.inference_mode():
        assert_same(third.fuse(a, b), other.fuse(a, b))
    # A replaced parameter object.
    model.decoder1.conv.bias = torch.nn.Parameter(torch.zeros(1))
    assert fast_inference(model) is not third
    # Different options are cached separately.
    assert fast_inference(model, channels_last=False) is not fast_inference(model)


def test_training_mode_has_no_fast_path() -> None:
    model = seeded_model()
    model.train()
    assert fast_inference(model) is None


def test_fast_path_does_not_touch_training_numerics() -> None:
    """Building the fast path leaves the model's parameters and modes alone."""
    model = seeded_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast_inference(model)
    fastpath.reduced_precision_check(model, torch.bfloat16, 2 / 255)
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_reduced_precision_check() -> None:
    model = seeded_model()
    ok, err = fastpath.reduced_precision_check(model, torch.bfloat16, 1.0)
    assert ok and 0.0 < err < 1.0
    ok0, err0 = fastpath.reduced_precision_check(model, torch.bfloat16, 0.0)
    assert not ok0 and err0 == err


def test_allocator_tuning_opt_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastpath, "_ALLOCATOR_TUNED", None)
    monkeypatch.setenv("MEDFUSE_MALLOC_TUNING", "0")
    assert fastpath.tune_allocator() is False


def test_invalid_options() -> None:
    model = seeded_model()
    with pytest.raises(ValueError):
        FastGeSeNet(model, body="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FastGeSeNet(model, sparse="sometimes")  # type: ignore[arg-type]
