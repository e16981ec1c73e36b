"""CLIP-MG model: split == monolithic, open_clip parity, freezing, presets, inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from live_harness import EvilPickle

from clipmg.model import VARIANTS, create_model, list_presets, load_config
from clipmg.model.layouts import assemble_openpose137, extract_layout


def _inputs(cfg, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = cfg.vision.image_size
    images = torch.randn(b, cfg.clip.rgb_frames, 3, s, s, generator=g)
    kp = torch.rand(b, cfg.clip.pose_frames, cfg.pose.num_joints, 3, generator=g)
    kp[..., :2] *= s
    return images, kp


@pytest.mark.parametrize("variant", VARIANTS)
def test_split_equals_monolithic(variant):
    torch.manual_seed(0)
    model = create_model("clipmg-tiny", num_classes=7, variant=variant).eval()
    images, kp = _inputs(model.cfg)
    with torch.no_grad():
        mono = model(images, kp)
        enc, head = model.split()
        x, c = enc(images.flatten(0, 1))
        split = head(x.reshape(2, 8, *x.shape[1:]), c.reshape(2, 8, -1), kp)
        # encoding frames one at a time (as the streaming cache does) changes nothing either
        per_frame = [enc(images[:, t]) for t in range(8)]
        x1 = torch.stack([p[0] for p in per_frame], 1)
        c1 = torch.stack([p[1] for p in per_frame], 1)
        split1 = head(x1, c1, kp)
    assert mono.shape == (2, 7)
    assert (mono - split).abs().max().item() <= 1e-5
    assert (mono - split1).abs().max().item() <= 1e-5


def test_variants_differ_in_what_they_use():
    torch.manual_seed(0)
    images, kp = _inputs(load_config("clipmg-tiny"))
    kp2 = kp.clone()
    kp2[:, :, :, :2] = kp2[:, :, :, :2].flip(0)
    outs = {}
    for v in VARIANTS:
        torch.manual_seed(0)
        m = create_model("clipmg-tiny", num_classes=5, variant=v).eval()
        with torch.no_grad():
            outs[v] = (m(images, kp) - m(images, kp2)).abs().max().item()
    assert outs["no_pose"] == 0.0  # keypoints are not an input of the no_pose variant
    for v in ("full", "no_gating", "no_cross_attention", "no_pose_guidance"):
        assert outs[v] > 1e-6, v


def _cross_attention_textbook(model, q, tokens):
    """Section 8 as written: block L's ``nn.MultiheadAttention`` projects every token to keys and values."""
    blk = model.visual.transformer.resblocks[-1]
    kv = blk.ln_1(tokens)
    y = q.unsqueeze(1)
    y = y + blk.ls_1(blk.attn(blk.ln_1(y), kv, kv, need_weights=False)[0])
    y = y + blk.ls_2(blk.mlp(blk.ln_2(y)))
    return model.visual.ln_post(y[:, 0])


@pytest.mark.parametrize("preset", ["clipmg-tiny", "clipmg-vitb32"])
def test_single_query_attention_equals_multihead_attention(preset):
    """The head's cross-attention moves the key/value projections onto the one query: the same
    outputs (float32) and the same gradients (float64, where the algebra is checked to 1e-12;
    float32 gradients of W_k differ by cancellation noise) as projecting all 8 * N tokens."""
    torch.manual_seed(2)
    model = create_model(preset, num_classes=4)
    blk = model.visual.transformer.resblocks[-1]
    with torch.no_grad():  # non-zero biases, so the claim that the key bias cancels is tested
        blk.attn.in_proj_bias.normal_(0, 0.5)
        blk.attn.out_proj.bias.normal_(0, 0.5)
    v = model.cfg.vision
    q = torch.randn(3, v.width)
    tokens = 3 * torch.randn(3, 8 * (1 + v.num_patches), v.width)
    model.eval()  # inference: the single-query form
    with torch.no_grad():
        fast, ref = model.cross_attend(q, tokens), _cross_attention_textbook(model, q, tokens)
        other = model.cross_attend(q, torch.cat([tokens[:, :50], -tokens[:, 50:]], 1))
        trained = model.train().cross_attend(q, tokens)  # training: the textbook form itself
    assert (fast - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
    assert torch.equal(trained, ref)
    assert (other - ref).abs().max().item() > 1e-3  # it does read the tokens
    model.eval().double()
    q, tokens = q.double().requires_grad_(), tokens.double().requires_grad_()
    fast, ref = model.cross_attend(q, tokens), _cross_attention_textbook(model, q, tokens)
    wrt = [q, tokens, blk.attn.in_proj_weight, blk.attn.in_proj_bias, blk.ln_1.weight]
    for a, b in zip(torch.autograd.grad(fast.square().sum(), wrt), torch.autograd.grad(ref.square().sum(), wrt)):
        assert (a - b).abs().max().item() <= 1e-12 + 1e-9 * b.abs().max().item()


def _with_trained_batchnorm(model, seed=3):
    """Non-trivial BatchNorm statistics and affine parameters in the skeleton encoder."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.skeleton.stages:
            if isinstance(m, torch.nn.BatchNorm3d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.6 * torch.rand(n, generator=g) - 0.3)
    return model


@pytest.mark.parametrize("preset", ["clipmg-tiny", "clipmg-vitb32"])
def test_skeleton_encoder_in_pieces_equals_its_3d_convolutions(preset):
    """Each stage as three temporal taps per time step, summed over neighbours (zero at the window's
    ends), then BatchNorm + ReLU: the same pose feature as the Conv3d stages, in float64 to 1e-12."""
    torch.manual_seed(4)
    model = _with_trained_batchnorm(create_model(preset, num_classes=4)).eval().double()
    _, kp = _inputs(model.cfg, b=2, seed=5)
    kp = kp.double()
    t, g = model.cfg.clip.rgb_frames, model.cfg.clip.group
    with torch.no_grad():
        ref = model.pose_feature(kp)
        x = kp.reshape(2 * t, g, *kp.shape[2:])  # every group of both windows, as stage 0 takes them
        for stage in range(model.skeleton.num_stages):
            taps = model.pose_partials(stage, x)  # (2*T, 3, C, H, W)
            taps = taps.reshape(2, t, *taps.shape[1:])
            pre = taps[:, :, 1].clone()
            pre[:, 1:] += taps[:, :-1, 0]
            pre[:, :-1] += taps[:, 1:, 2]
            x = pre.flatten(0, 1)
        p = model.skeleton.finish(pre.transpose(1, 2))
    assert (p - ref).abs().max().item() <= 1e-12 * ref.abs().max().item()
    assert ref.abs().max().item() > 0


@pytest.mark.parametrize("stride", [4, 8, 12, 32])
def test_pose_branch_cache_over_a_stream_equals_each_window_from_scratch(stride):
    """``PoseBranchCache`` across sliding windows (some skipped, as a late worker skips them) gives
    each window's pose feature as the model computes it from scratch, and does each group's share
    once: at S = 8, two new groups a window, so 2, 4 and 6 stage inputs instead of 8, 8 and 8."""
    from clipmg.model.pose_cache import PoseBranchCache

    torch.manual_seed(6)
    model = _with_trained_batchnorm(create_model("clipmg-tiny", num_classes=4)).eval()
    cfg = model.cfg
    rng = np.random.default_rng(stride)
    n = 32 + 9 * stride
    kp = rng.random((n, cfg.pose.num_joints, 3)).astype(np.float32)
    kp[..., :2] *= cfg.vision.image_size
    kp[40:48, :, 2] = 0.0  # two groups with nobody in them

    def partials(stage, x):
        with torch.no_grad():
            return model.pose_partials(stage, torch.from_numpy(x)).numpy()

    cache = PoseBranchCache(partials, cfg.clip.rgb_frames, cfg.clip.group)
    prev = None
    for w in range(10):
        if w in (3, 4):  # skipped windows: their groups are computed when first needed
            continue
        before = list(cache.computed)
        win = kp[w * stride : w * stride + 32]
        pre = cache.window(w * stride // 4, win)
        with torch.no_grad():
            p = model.skeleton.finish(torch.from_numpy(pre)[None])
            ref = model.pose_feature(torch.from_numpy(win)[None])
        assert (p - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
        # n new groups: stage i computes them plus the 2i inputs that touch the window's ends
        n = 8 if prev is None else min(8, (w - prev) * stride // 4)
        assert [a - b for a, b in zip(cache.computed, before)] == [min(8, n + 2 * i) for i in range(3)]
        prev = w
    # only the stream's groups still ahead are kept
    assert min(cache.keypoints) == 9 * stride // 4 and max(len(t) for t in cache.taps) <= 8


def test_pose_cache_flop_count_reduces_to_the_whole_head():
    """The profile's steady-state count (``model/profile.py``): with every group new it is exactly
    the whole head's FLOPs (the pieces do the Conv3d's work, no more); at S = 8 it is smaller by
    the 6, 4 and 2 stage inputs a window no longer computes."""
    from clipmg.model.pose_cache import stage_shapes
    from clipmg.model.profile import count_flops, pose_cached_head_flops

    model = create_model("clipmg-tiny", num_classes=4).eval()
    cfg = model.cfg
    _, kp = _inputs(cfg, b=1)
    n = 1 + cfg.vision.num_patches
    tokens, emb = torch.zeros(1, 8, n, cfg.vision.width), torch.zeros(1, 8, cfg.vision.embed_dim)
    whole = count_flops(model.head, tokens, emb, kp)
    assert pose_cached_head_flops(model, tokens, emb, kp, new_groups=8) == whole
    per_input = [
        2 * 9 * sh["taps"][0] * sh["taps"][1] * sh["input"][0] * sh["taps"][2] * sh["taps"][3]
        for sh in stage_shapes(cfg)
    ]  # one time step's three taps: 3 x C_out x C_in x 3 x 3 per pixel
    heat = count_flops(model.pose_partials, 0, kp[0, :4].reshape(1, 4, *kp.shape[2:])) - per_input[0]
    saved = 6 * (per_input[0] + heat) + 4 * per_input[1] + 2 * per_input[2]
    assert pose_cached_head_flops(model, tokens, emb, kp, new_groups=2) == whole - saved


def test_pose_branch_cache_drops_everything_when_a_group_changes():
    """A restarted stream that reuses group numbers must not be served the old groups' taps."""
    from clipmg.model.pose_cache import PoseBranchCache

    torch.manual_seed(7)
    model = _with_trained_batchnorm(create_model("clipmg-tiny", num_classes=4)).eval()
    cfg = model.cfg

    def partials(stage, x):
        with torch.no_grad():
            return model.pose_partials(stage, torch.from_numpy(x)).numpy()

    _, a = _inputs(cfg, b=1, seed=8)
    _, b = _inputs(cfg, b=1, seed=9)
    cache = PoseBranchCache(partials, cfg.clip.rgb_frames, cfg.clip.group)
    cache.window(0, a[0].numpy())
    pre = cache.window(0, b[0].numpy())  # same group numbers, other keypoints
    with torch.no_grad():
        p, ref = model.skeleton.finish(torch.from_numpy(pre)[None]), model.pose_feature(b)
    assert (p - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
    assert cache.computed == [16, 16, 16]


def _open_clip_visual(preset: str):
    import open_clip
    from open_clip.model import CLIP

    cfg = load_config(preset).vision
    if preset == "clipmg-vitb32":
        clip = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True)
    else:
        clip = CLIP(
            embed_dim=cfg.embed_dim,
            quick_gelu=cfg.quick_gelu,
            vision_cfg=dict(
                image_size=cfg.image_size,
                patch_size=cfg.patch_size,
                width=cfg.width,
                layers=cfg.layers,
                head_width=cfg.width // cfg.heads,
            ),
            text_cfg=dict(context_length=8, vocab_size=16, width=32, heads=2, layers=1),
        )
    return clip.visual.eval()


@pytest.mark.parametrize("preset", ["clipmg-tiny", "clipmg-vitb32"])
def test_frame_embedding_equals_open_clip(preset):
    torch.manual_seed(1)
    visual = _open_clip_visual(preset)
    model = create_model(preset, num_classes=4).eval()
    model.visual.load_state_dict(visual.state_dict())
    s = model.cfg.vision.image_size
    x = torch.randn(2, 3, s, s)
    with torch.no_grad():
        ref = visual(x)
        tokens, emb = model.encode_frames(x)  # eval: block L for the CLS token only
        emb_train = model.train().frame_embedding(tokens)  # training: block L on every token
    assert emb.shape == ref.shape == (2, model.cfg.vision.embed_dim)
    assert tokens.shape == (2, 1 + model.cfg.vision.num_patches, model.cfg.vision.width)
    assert torch.allclose(emb, ref, atol=1e-5, rtol=1e-4), (emb - ref).abs().max()
    assert torch.allclose(emb_train, ref, atol=1e-5, rtol=1e-4), (emb_train - ref).abs().max()


def test_pretrained_from_local_file(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(2)
    visual = _open_clip_visual("clipmg-tiny")
    # a full CLIP-style state dict with "visual." keys, as open_clip checkpoints have
    save_file(
        {f"visual.{k}": v.contiguous() for k, v in visual.state_dict().items()}, str(tmp_path / "clip.safetensors")
    )
    model = create_model("clipmg-tiny", num_classes=3, pretrained=str(tmp_path / "clip.safetensors"))
    for k, v in visual.state_dict().items():
        assert torch.equal(model.visual.state_dict()[k], v), k
    torch.save(visual.state_dict(), tmp_path / "visual.pt")
    model2 = create_model("clipmg-tiny", num_classes=3, pretrained=str(tmp_path / "visual.pt"))
    assert torch.equal(model2.visual.proj, visual.proj)
    with pytest.raises(ValueError, match="neither a local file nor an open_clip pretrained tag"):
        create_model("clipmg-tiny", num_classes=3, pretrained="no-such-tag")


def test_pickled_code_in_clip_weights_is_refused(tmp_path):
    torch.save({"visual.proj": EvilPickle(tmp_path / "pwned")}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="cannot read CLIP weights"):
        create_model("clipmg-tiny", num_classes=3, pretrained=str(tmp_path / "evil.pt"))


@pytest.mark.parametrize("variant", ["full", "no_cross_attention"])
def test_frozen_and_trainable_after_a_step(variant):
    torch.manual_seed(0)
    model = create_model("clipmg-tiny", num_classes=5, variant=variant).train()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    groups = model.trainable_parameters()
    opt = torch.optim.AdamW([{"params": groups["new"], "lr": 1e-3}, {"params": groups["vit"], "lr": 1e-3}])
    images, kp = _inputs(model.cfg, b=4)
    loss = torch.nn.functional.cross_entropy(model(images, kp), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    n_blocks = model.cfg.vision.layers
    frozen_prefixes = ["visual.conv1", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre"] + [
        f"visual.transformer.resblocks.{i}." for i in range(n_blocks - model.cfg.vision.trainable_blocks)
    ]
    if variant != "no_cross_attention":  # proj feeds only c_t, which only that variant's head reads
        frozen_prefixes.append("visual.proj")
    n_frozen = n_train = 0
    for name, p in model.named_parameters():
        frozen = any(name.startswith(f) for f in frozen_prefixes)
        if frozen:
            n_frozen += 1
            assert not p.requires_grad and p.grad is None, name
            assert torch.equal(p, before[name]), name
        else:
            n_train += 1
            assert p.requires_grad, name
            assert not torch.equal(p, before[name]), f"{name} did not change"
    assert n_frozen > 0 and n_train > 0
    for i in range(n_blocks - 2, n_blocks):
        assert model.visual.transformer.resblocks[i].attn.in_proj_weight.requires_grad


def test_frozen_blocks_run_without_autograd():
    model = create_model("clipmg-tiny", num_classes=3).train()
    x = torch.randn(2, 3, 96, 96, requires_grad=True)
    h = model.encode_frozen(x)
    assert not h.requires_grad and h.grad_fn is None
    tokens, emb = model.encode_trainable(h)
    assert tokens.requires_grad and emb.requires_grad


def test_presets_and_errors():
    assert set(list_presets()) >= {"clipmg-vitb16", "clipmg-vitb32", "clipmg-tiny"}
    with pytest.raises(ValueError, match="clipmg-tiny, clipmg-vitb16, clipmg-vitb32"):
        create_model("clipmg-vitl14")
    with pytest.raises(ValueError, match="full, no_gating, no_cross_attention, no_pose_guidance, no_pose"):
        create_model("clipmg-tiny", variant="no_skeleton")
    with pytest.raises(ValueError, match="unknown model option"):
        create_model("clipmg-tiny", num_layers=3)
    b16 = load_config("clipmg-vitb16")
    assert (b16.vision.patch_size, b16.vision.num_patches, b16.vision.width, b16.pose.num_joints) == (16, 196, 768, 22)
    assert load_config("clipmg-vitb32").vision.num_patches == 49


def test_config_json_roundtrip(tmp_path):
    cfg = load_config("clipmg-tiny").replace(num_classes=11, variant="no_gating")
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps(cfg.to_dict()))
    m = create_model(p)
    assert m.cfg == cfg


def test_bad_inputs_are_named():
    model = create_model("clipmg-tiny", num_classes=3)
    images, kp = _inputs(model.cfg)
    with pytest.raises(ValueError, match=r"images: expected shape \(B, 8, 3, 96, 96\)"):
        model.check_inputs(images=images[:, :, :, :64])
    with pytest.raises(ValueError, match=r"expected shape \(B, 32, 22, 3\)"):
        model.check_inputs(keypoints=kp[:, :, :20])
    bad = kp.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model.check_inputs(keypoints=bad)
    bad = kp.clone()
    bad[0, 0, 0, 2] = -0.5
    with pytest.raises(ValueError, match="negative confidence"):
        model.check_inputs(keypoints=bad)


def _read_openpose_json(path):
    person = json.loads(path.read_text())["people"][0]
    parts = [
        np.asarray(person[k], np.float32).reshape(-1, 3)
        for k in ("pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d")
    ]
    return assemble_openpose137(*parts)


def test_real_openpose_frames_through_the_tiny_model(shared_data):
    from clipmg.model.crop import center_box
    from clipmg.model.heatmaps import heatmap_volume
    from clipmg.model.preprocess import prepare_keypoints

    files = sorted((shared_data / "imigue-openpose-298").glob("*_keypoints.json"))
    assert len(files) == 48
    kp137 = np.stack([_read_openpose_json(f) for f in files])  # (48, 137, 3), 1280x720 pixels
    kp = extract_layout(kp137[13:45], "upper22")  # frames 13..44 -> (32, 22, 3); window 3 = frames 25..28
    model = create_model("clipmg-tiny", num_classes=4).eval()
    cfg = model.cfg
    box = center_box(1280, 720)
    model_kp = prepare_keypoints(kp, [box] * 8, cfg)
    vol = heatmap_volume(
        torch.from_numpy(model_kp)[None],
        cfg.vision.image_size,
        cfg.pose.heatmap_size,
        cfg.pose.heatmap_sigma,
        8,
        cfg.pose.min_confidence,
    )[0]  # (J, 8, H, W)
    s, hs = cfg.vision.image_size, cfg.pose.heatmap_size
    checked = 0
    for j in range(cfg.pose.num_joints):
        for t in range(8):
            grp = model_kp[4 * t : 4 * t + 4, j]
            ok = grp[:, 2] >= cfg.pose.min_confidence
            hm = vol[j, t]
            if not ok.any():
                assert hm.abs().max() == 0
                continue
            if not ok.all() or np.ptp(grp[:, :2], axis=0).max() > s / hs:  # moving joint: peak is blurred
                continue
            # joint (x, y) from the JSON, through the crop, onto the canvas
            x, y = grp[:, 0].mean() * hs / s - 0.5, grp[:, 1].mean() * hs / s - 0.5
            if not (0 <= x < hs and 0 <= y < hs):
                continue
            iy, ix = divmod(int(hm.argmax()), hs)
            assert abs(ix - x) <= 1.0 and abs(iy - y) <= 1.0, (j, t, ix, iy, x, y)
            checked += 1
    assert checked >= 50
    # frames 25-28 have no right hand (data/README.md): window 3's right-fingertip maps are empty,
    # while window 2 (frames 21-24) has them
    rtips = list(range(12, 17))  # upper22: 12 body joints, then the right fingertips
    assert float(vol[rtips, 3].abs().max()) == 0.0
    assert float(vol[rtips, 2].abs().max()) > 0.0
    images = torch.zeros(1, 8, 3, s, s)
    with torch.no_grad():
        logits = model(images, torch.from_numpy(model_kp)[None])
    assert torch.isfinite(logits).all() and logits.shape == (1, 4)
