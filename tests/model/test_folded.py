"""The folded inference form equals the training form with hard masks (seeded weights).

Tolerance FOLD_TOL (1e-4) max abs on the fused luminance and body outputs; masks must be
identical. Sizes are small so the whole file runs in seconds on 2 CPU cores.
"""

from __future__ import annotations

import pytest
import torch

from helpers.networks import assert_same_output, seeded_model, tensor_pair
from medfuse.model import FoldedGeSeNet, GeSeNet
from medfuse.model.folded import FOLD_OPTIONS, clear_cache, fold

TOL = 1e-4


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
def test_folded_equals_training_form(channels_last: bool, body: str, sparse: str) -> None:
    model = seeded_model()
    a, b = tensor_pair(2, 32, 46)
    folded = model.fold(channels_last=channels_last, body=body, sparse=sparse)
    with torch.inference_mode():
        assert_same_output(folded.fuse(a, b), model.fuse(a, b))


def test_reference_like_masks_take_the_uniform_shortcut() -> None:
    """A functional branch whose spatial mask is all ones (as the reference checkpoint's)
    runs plain convolutions and still matches."""
    model = seeded_model(7)
    with torch.no_grad():
        # Make the functional branch's principal logit dominate everywhere.
        model.vis_rmm.spa_mask[5].bias.copy_(torch.tensor([-1e4, 1e4]))
    a, b = tensor_pair(1, 40, 40, seed=3)
    folded = FoldedGeSeNet(model, sparse="never")
    with torch.inference_mode():
        out = folded.fuse(a, b)
        assert_same_output(out, model.fuse(a, b))
    assert out.mask_functional.min().item() == 1.0
    assert folded.last_body_paths["functional"] == "uniform"


def set_channel_masks(model: GeSeNet, sparse_per_layer: list[list[int]]) -> None:
    """Force each masked layer's sparse channels (both branches)."""
    with torch.no_grad():
        for branch in model.BRANCHES:
            param = model.channel_mask_logits(branch)
            logits = torch.zeros_like(param)
            logits[..., 0] = 1.0
            for layer, chans in enumerate(sparse_per_layer):
                for c in chans:
                    logits[0, c, layer] = torch.tensor([0.0, 1.0])
            param.copy_(logits)


ALL = list(range(GeSeNet.FEATURES))


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
    assert model.sparse_channel_counts()["mri"] == [len(p) for p in pattern]
    a, b = tensor_pair(1, 32, 46, seed=8)
    folded = FoldedGeSeNet(model, body=body, sparse=sparse)  # type: ignore[arg-type]
    with torch.inference_mode():
        out = folded.fuse(a, b)
        assert_same_output(out, model.fuse(a, b))
    assert 0 < out.mask_mri.mean().item() < 1  # the masked (non-uniform) code path ran


def test_channel_logit_ties_go_dense_in_both_forms() -> None:
    """Equal logits are dense under the one hard-mask rule, in the folded form too."""
    model = seeded_model(4)
    with torch.no_grad():
        for branch in model.BRANCHES:
            model.channel_mask_logits(branch).zero_()
            model.channel_mask_logits(branch)[0, :5, :, 1] = 1.0  # channels 0-4 sparse
    assert model.sparse_channel_counts() == {"mri": [5] * 4, "functional": [5] * 4}
    a, b = tensor_pair(1, 32, 32, seed=2)
    with torch.inference_mode():
        assert_same_output(model.fold().fuse(a, b), model.fuse(a, b))


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
    torch.manual_seed(9)
    e = torch.relu(torch.randn(2, GeSeNet.FEATURES, 64, 80))
    spa = disk_mask(2, 64, 80, radius)
    folded = FoldedGeSeNet(model, sparse=sparse, sparse_gap=4)  # type: ignore[arg-type]
    with torch.inference_mode():
        ref = model.masked_body("mri", e, spa)
        got = folded.masked_body("mri", e, spa)
    assert (got - ref).abs().max().item() <= TOL
    if sparse == "always" and 0 < radius < 1e9:
        assert folded.last_body_paths["mri"].startswith("sparse (")


def test_box_sparse_several_bands_and_borders() -> None:
    """Per-sample masks: two blobs far apart (two bands), and one in a corner (windows
    clipped at the image border)."""
    model = seeded_model(6)
    e = torch.relu(torch.randn(2, GeSeNet.FEATURES, 64, 72))
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(72), indexing="ij")
    spa = torch.zeros(2, 1, 64, 72)
    spa[0, 0] = (((yy - 8) ** 2 + (xx - 20) ** 2) <= 25).float()
    spa[0, 0] += (((yy - 50) ** 2 + (xx - 60) ** 2) <= 16).float()
    spa[1, 0] = ((yy < 7) & (xx > 60)).float()
    folded = FoldedGeSeNet(model, sparse="always", sparse_gap=4)
    with torch.inference_mode():
        boxes, area = folded.sparse_boxes(spa)
        ref = model.masked_body("functional", e, spa)
        got = folded.masked_body("functional", e, spa)
    assert len(boxes) == 3 and area < 0.2  # the windows: boxes grown by 8 pixels
    assert (got - ref).abs().max().item() <= TOL


@pytest.mark.parametrize("sparse_channels", ["all", "none", "alternate"])
def test_sparse_body_with_extreme_channel_masks(sparse_channels: str) -> None:
    """Every channel sparse (the dense chain is the collect bias alone), none sparse
    (the sparse body is the dense chain), and a layer without dense inputs."""
    model = seeded_model(7)
    ch = model.inf_rmm.body.ch_mask
    with torch.no_grad():
        ch.zero_()
        if sparse_channels == "all":
            ch[..., 0] = 1.0
        elif sparse_channels == "none":
            ch[..., 1] = 1.0
        else:  # layers 0 and 2 all sparse, 1 and 3 all dense
            ch[..., 0::2, 0] = 1.0
            ch[..., 1::2, 1] = 1.0
    torch.manual_seed(3)
    e = torch.relu(torch.randn(1, GeSeNet.FEATURES, 48, 56))
    spa = disk_mask(1, 48, 56, 7.0)
    folded = FoldedGeSeNet(model, sparse="always")
    with torch.inference_mode():
        ref = model.masked_body("mri", e, spa)
        got = folded.masked_body("mri", e, spa)
    assert folded.last_body_paths["mri"].startswith("sparse (")
    assert (got - ref).abs().max().item() <= TOL


def test_sparse_cost_model() -> None:
    """The modelled cost grows with the windows' area and with the dense chain's share."""
    model = seeded_model(5)
    folded = FoldedGeSeNet(model)
    small, large = disk_mask(1, 64, 64, 4.0), disk_mask(1, 64, 64, 14.0)
    assert folded.sparse_cost("mri", small) < folded.sparse_cost("mri", large)
    assert folded.sparse_cost("mri", small) > folded.sparse_boxes(small)[1]


def test_sparse_auto_threshold() -> None:
    """auto takes the sparse body exactly when the modelled cost is under the limit."""
    model = seeded_model(5)
    e = torch.relu(torch.randn(1, GeSeNet.FEATURES, 64, 64))
    small = disk_mask(1, 64, 64, 5.0)
    half = torch.zeros(1, 1, 64, 64)
    half[..., :40, :] = 1  # a box over 62% of the image
    probe = FoldedGeSeNet(model)
    limit = probe.sparse_cost("mri", small) + 0.01
    assert probe.sparse_cost("mri", half) > limit
    folded = FoldedGeSeNet(model, sparse="auto", sparse_max_cost=limit)
    with torch.inference_mode():
        folded.masked_body("mri", e, small)
        assert folded.last_body_paths["mri"].startswith("sparse (")
        folded.masked_body("mri", e, half)
        assert folded.last_body_paths["mri"] == folded.body_mode


def test_pooled_override_matches() -> None:
    model = seeded_model()
    a, b = tensor_pair(1, 32, 36, seed=4)
    pooled = (torch.rand(1, GeSeNet.FEATURES, 1, 1), torch.rand(1, GeSeNet.FEATURES, 1, 1))
    folded = model.fold()
    with torch.inference_mode():
        assert_same_output(folded.fuse(a, b, pooled=pooled), model.fuse(a, b, pooled=pooled))
        for got, ref in zip(folded.body_features(a, b), model.body_features(a, b)):
            assert (got - ref).abs().max().item() <= TOL


def test_pooled_as_a_function_of_the_bodies() -> None:
    """``pooled`` given as a function gets this call's body outputs and its means are
    used: the identity function's means equal no override at all, and a function that
    returns fixed means equals passing them."""
    model = seeded_model()
    a, b = tensor_pair(1, 32, 36, seed=5)
    fixed = (torch.rand(1, GeSeNet.FEATURES, 1, 1), torch.rand(1, GeSeNet.FEATURES, 1, 1))
    seen = []

    def own_means(bi: torch.Tensor, bv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append((bi.shape, bv.shape))
        return bi.mean((-2, -1), keepdim=True), bv.mean((-2, -1), keepdim=True)

    folded = model.fold()
    with torch.inference_mode():
        assert torch.equal(folded.fuse(a, b, pooled=own_means).fused, folded.fuse(a, b).fused)
        assert torch.equal(folded.fuse(a, b, pooled=lambda *_: fixed).fused,
                           folded.fuse(a, b, pooled=fixed).fused)
    assert seen == [((1, GeSeNet.FEATURES, 32, 36),) * 2]


def test_without_mask_shortcuts() -> None:
    """``mask_shortcuts=False`` (no host reads of mask values, for CUDA graphs) computes
    the same function, uniform masks included."""
    model = seeded_model(7)
    with torch.no_grad():
        model.vis_rmm.spa_mask[5].bias.copy_(torch.tensor([-1e4, 1e4]))  # all-ones mask
    a, b = tensor_pair(2, 32, 40, seed=6)
    folded = model.fold(sparse="never", mask_shortcuts=False)
    with torch.inference_mode():
        assert_same_output(folded.fuse(a, b), model.fuse(a, b))
    assert folded.last_body_paths["functional"] == "split"


def test_edge_padding_with_zeros_is_the_plain_forward() -> None:
    """The padded convolutions (and the transposed one, whose output is re-indexed) give
    the plain result when the padding is zeros, and the crop form calls the padding the
    same number of times whatever the masks are."""
    import torch.nn.functional as F

    from medfuse.model.folded import edge_padding

    model = seeded_model(3)
    a, b = tensor_pair(1, 34, 40, seed=8)
    crops = model.fold().for_crops()
    calls = []

    def zeros(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape[-2:]))
        return F.pad(x, (1, 1, 1, 1))

    with torch.inference_mode():
        plain = crops.fuse(a, b)
        with edge_padding(zeros):
            padded = crops.fuse(a, b)
        n = len(calls)
        with edge_padding(zeros):
            crops.fuse(torch.zeros_like(a), torch.ones_like(b))
    assert torch.equal(plain.fused, padded.fused)
    assert torch.equal(plain.mask_mri, padded.mask_mri)
    assert (17, 20) in calls and (34, 40) in calls  # half and full resolution
    assert len(calls) == 2 * n


def test_return_bodies_false_drops_only_the_bodies() -> None:
    model = seeded_model()
    a, b = tensor_pair(1, 32, 32, seed=7)
    with torch.inference_mode():
        full = model.fold().fuse(a, b)
        lean = model.fold().fuse(a, b, return_bodies=False)
        dense = model.fuse(a, b, return_bodies=False)
    assert torch.equal(full.fused, lean.fused)
    assert lean.body_mri.numel() == lean.body_functional.numel() == 0
    assert dense.body_mri.numel() == 0
    assert_same_output(lean, dense, bodies=False)


def test_deterministic() -> None:
    model = seeded_model()
    a, b = tensor_pair(2, 32, 32, seed=5)
    folded = FoldedGeSeNet(model)
    with torch.inference_mode():
        first = folded.fuse(a, b)
        second = folded.fuse(a, b)
    assert torch.equal(first.fused, second.fused)
    assert torch.equal(first.mask_mri, second.mask_mri)


def test_odd_size_rejected() -> None:
    a, b = tensor_pair(1, 31, 32)
    with pytest.raises(ValueError, match="even"):
        seeded_model().fold().fuse(a, b)


def test_cache_reuses_and_invalidates() -> None:
    model = seeded_model()
    a, b = tensor_pair(1, 32, 32, seed=6)
    first = model.fold()
    assert model.fold() is first and fold(model) is first
    # In-place change (what an optimizer step does): the folded weights must follow.
    with torch.no_grad():
        model.decoder2.conv.weight.mul_(1.5)
    second = model.fold()
    assert second is not first
    with torch.inference_mode():
        assert_same_output(second.fuse(a, b), model.fuse(a, b))
    # load_state_dict copies in place too.
    other = seeded_model(99)
    model.load_state_dict(other.state_dict())
    third = model.fold()
    assert third is not second
    with torch.inference_mode():
        assert_same_output(third.fuse(a, b), other.fuse(a, b))
    # A replaced parameter object.
    model.decoder1.conv.bias = torch.nn.Parameter(torch.zeros(1))
    assert model.fold() is not third
    # Different options are cached separately; clear_cache drops everything.
    assert model.fold(channels_last=False) is not model.fold()
    kept = model.fold()
    clear_cache()
    assert model.fold() is not kept


def test_fold_in_training_mode_is_the_eval_function() -> None:
    """fold() always gives the hard-mask function; running a training-mode network is
    the caller's choice (the engine then runs the network itself)."""
    model = seeded_model()
    model.train()
    folded = model.fold()
    a, b = tensor_pair(1, 32, 32, seed=1)
    with torch.inference_mode():
        got = folded.fuse(a, b)
        model.eval()
        assert_same_output(got, model.fuse(a, b))


def test_folding_leaves_the_network_alone() -> None:
    """Building the folded form changes neither parameters nor mode."""
    model = seeded_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.fold()
    model.fold(dtype=torch.bfloat16)
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_invalid_options() -> None:
    model = seeded_model()
    with pytest.raises(ValueError, match="body"):
        FoldedGeSeNet(model, body="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sparse"):
        FoldedGeSeNet(model, sparse="sometimes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fold options"):
        model.fold(colour="red")
    with pytest.raises(ValueError, match="branch"):
        model.fold().masked_body("pet", torch.zeros(1, 32, 8, 8), torch.zeros(1, 1, 8, 8))  # type: ignore[arg-type]
    assert set(FOLD_OPTIONS) >= {"channels_last", "dtype", "body", "sparse"}


def test_body_paths_follow_the_planner() -> None:
    """A planner that returns the path the form itself would choose (its plan, its own
    windows) gives the plain forward bit for bit; the split body forced where the form
    takes the sparse one agrees to float rounding; the planner sees each branch once."""
    from medfuse.model.folded import BodyPlan, body_paths

    model = seeded_model(3)
    a, b = tensor_pair(1, 64, 64, seed=8)
    net = model.fold(sparse="always")
    seen: list[str] = []

    def own(name: str, e: torch.Tensor, spa: torch.Tensor) -> BodyPlan:
        seen.append(name)
        plan = net.body_plan(name, spa)
        if plan.kind == "sparse":
            branch = net.inf if name == "mri" else net.vis
            plan.windows = net._image_windows(branch, e, spa, plan.boxes)
        return plan

    with torch.inference_mode():
        plain = net.fuse(a, b)
        paths = dict(net.last_body_paths)
        with body_paths(own):
            planned = net.fuse(a, b)
        with body_paths(lambda name, e, spa: BodyPlan("split")):
            split = net.fuse(a, b)
    assert seen == ["mri", "functional"]
    assert any(p.startswith("sparse (") for p in paths.values()), paths
    assert torch.equal(plain.fused, planned.fused)
    assert torch.equal(plain.body_mri, planned.body_mri)
    assert net.last_body_paths == {"mri": "split", "functional": "split"}
    assert (plain.fused - split.fused).abs().max() < 1e-5
