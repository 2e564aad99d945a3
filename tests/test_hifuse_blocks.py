"""HiFuse building blocks: exact window partition/reverse (with shift and padding), the attention mask against a
direct construction, SDPA attention against explicit softmax, shapes and gradients in 2D and 3D."""
import itertools
import warnings

import pytest
import torch
from torch import nn

from nnunet_fuse.hifuse.blocks import GlobalBlock, HFFBlock, LocalBlock, WindowAttention
from nnunet_fuse.hifuse.windows import (attention_mask, effective_window, pad_to_windows, relative_position_index,
                                        window_partition, window_reverse)

CONV = {2: nn.Conv2d, 3: nn.Conv3d}
NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


@pytest.mark.parametrize("spatial,window,shift", [((8, 12), (4, 4), (2, 2)), ((7, 10), (4, 3), (2, 1)),
                                                  ((4, 6, 8), (2, 3, 4), (1, 1, 2)), ((5, 7, 6), (2, 4, 4), (0, 2, 2))])
def test_partition_and_reverse_are_exact_inverses_with_shift_and_padding(spatial, window, shift):
    x = torch.randn(2, 3, *spatial)
    padded = pad_to_windows(x, window)
    assert all(p % w == 0 and p - s < w for p, s, w in zip(padded.shape[2:], spatial, window))
    axes = list(range(2, x.dim()))
    rolled = torch.roll(padded, [-s for s in shift], dims=axes)
    windows = window_partition(rolled, window)
    n = 1
    for w in window:
        n *= w
    assert windows.shape == (2 * padded[0, 0].numel() // n, n, 3)
    back = torch.roll(window_reverse(windows, window, padded.shape[2:]), list(shift), dims=axes)
    assert torch.equal(back[(slice(None), slice(None), *[slice(0, s) for s in spatial])], x)
    # window k of sample b holds exactly the voxels of its block
    first = rolled[(0, slice(None), *[slice(0, w) for w in window])].reshape(3, -1).T
    assert torch.equal(windows[0], first)


def test_window_is_clipped_and_not_shifted_where_the_map_is_one_window():
    assert effective_window((4, 16), (7, 7), (3, 3)) == ((4, 7), (0, 3))
    assert effective_window((7, 7), (7, 7), (3, 3)) == ((7, 7), (0, 0))
    with pytest.raises(ValueError, match="must divide"):
        window_partition(torch.zeros(1, 1, 5, 4), (2, 2))


def test_attention_mask_matches_a_direct_construction():
    """Two voxels may attend each other iff they lie in the same window of the rolled map, came from the same side of
    the cyclic wrap along every axis, and the key is not padding; every voxel may attend itself."""
    spatial, window, shift, valid = (8, 6), (4, 3), (2, 1), (7, 6)
    mask = attention_mask(spatial, window, shift, valid)
    coords = torch.stack(torch.meshgrid(*[torch.arange(s) for s in spatial], indexing="ij"), 0).float()[None]
    windows = window_partition(coords, window)                       # (nW, N, 2): rolled-map coordinates
    original = (windows + torch.tensor(shift)) % torch.tensor(spatial)   # where each voxel came from
    wrapped = windows + torch.tensor(shift) >= torch.tensor(spatial)     # came across the wrap
    for k, (i, j) in itertools.product(range(mask.shape[0]), itertools.product(range(12), repeat=2)):
        same_side = bool((wrapped[k, i] == wrapped[k, j]).all())
        key_valid = bool((original[k, j] < torch.tensor(valid)).all())
        assert mask[k, i, j].item() == ((same_side and key_valid) or i == j)
    assert attention_mask((8, 6), (4, 3), (0, 0), (8, 6)) is None


def test_relative_position_index_counts_offsets():
    index = relative_position_index((2, 3), (2, 3))
    assert index.shape == (6, 6) and index.min() == 0 and index.max() == 3 * 5 - 1
    assert len(torch.unique(index.diagonal())) == 1                     # zero offset: one entry
    clipped = relative_position_index((1, 3), (2, 3))                    # a clipped window reuses the same table
    assert torch.equal(clipped, index[:3, :3])


def test_window_attention_equals_explicit_softmax_with_bias_and_mask():
    torch.manual_seed(0)
    attention = WindowAttention(8, 2, (2, 3)).double()
    nn.init.normal_(attention.bias_table)
    x = torch.randn(4, 6, 8, dtype=torch.float64)                       # B=2 samples × nW=2 windows
    mask = torch.rand(2, 6, 6) > 0.3
    mask |= torch.eye(6, dtype=torch.bool)
    out = attention(x, (2, 3), mask)
    q, k, v = attention.qkv(x).reshape(4, 6, 3, 2, 4).permute(2, 0, 3, 1, 4)
    bias = attention.bias_table[relative_position_index((2, 3), (2, 3)).reshape(-1)].reshape(6, 6, 2).permute(2, 0, 1)
    scores = q @ k.transpose(-1, -2) / 2 + bias                         # 1/sqrt(d), d = 4
    scores = scores.masked_fill(~mask.repeat(2, 1, 1)[:, None], float("-inf"))
    expected = attention.project((scores.softmax(-1) @ v).transpose(1, 2).reshape(4, 6, 8))
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("dims", [2, 3])
def test_blocks_shapes_and_gradients(dims):
    torch.manual_seed(0)
    conv, norm = CONV[dims], NORM[dims]
    spatial = (6, 9) if dims == 2 else (4, 6, 5)                         # not multiples of the window: padding
    local, global_ = torch.randn(2, 8, *spatial), torch.randn(2, 16, *spatial)
    previous = torch.randn(2, 4, *[2 * s for s in spatial])
    blocks = nn.ModuleList([
        LocalBlock(conv, 8, norm, {"affine": True}),
        GlobalBlock(conv, 16, 2, (4,) * dims, shift=True, norm_op=norm, norm_op_kwargs={"affine": True}),
        HFFBlock(conv, 8, 16, 12, c_previous=4, stride=(2,) * dims, norm_op=norm, norm_op_kwargs={"affine": True},
                 reduction=4),
        HFFBlock(conv, 8, 16, 12, norm_op=norm, norm_op_kwargs={"affine": True}, reduction=4),  # 4 hidden units
    ])
    l_out = blocks[0](local)
    g_out = blocks[1](global_)
    fused = blocks[2](l_out, g_out, previous)
    first = blocks[3](l_out, g_out)
    assert l_out.shape == local.shape and g_out.shape == global_.shape
    assert fused.shape == first.shape == (2, 12, *spatial)
    (fused.square().mean() + first.square().mean()).backward()
    assert [n for n, p in blocks.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []
    with pytest.raises(ValueError, match="built with a previous stage input, called without"):
        blocks[2](l_out, g_out)


def test_shifted_block_differs_from_unshifted_and_is_not_shifted_on_one_window():
    torch.manual_seed(0)
    shifted = GlobalBlock(nn.Conv2d, 8, 2, (4, 4), shift=True)
    plain = GlobalBlock(nn.Conv2d, 8, 2, (4, 4), shift=False)
    plain.load_state_dict(shifted.state_dict())
    x = torch.randn(1, 8, 8, 8)
    assert not torch.allclose(shifted(x), plain(x))
    small = torch.randn(1, 8, 4, 4)                                      # one window: the shift is dropped
    torch.testing.assert_close(shifted(small), plain(small))


def test_global_block_under_autocast_follows_dtype():
    block = GlobalBlock(nn.Conv2d, 8, 2, (4, 4), shift=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(torch.randn(1, 8, 8, 8))
    assert torch.isfinite(out.float()).all()


def test_global_block_trains_after_an_inference_call():
    """The window index and mask are built once and cached; one built under inference mode (nnUNetv2_predict) must
    still serve a later training step."""
    block = GlobalBlock(nn.Conv2d, 16, 2, (4, 4), shift=True)
    with torch.inference_mode():
        block(torch.randn(1, 16, 14, 13))
    x = torch.randn(1, 16, 14, 13, requires_grad=True)
    block(x).square().mean().backward()
    assert x.grad is not None and block.attention.bias_table.grad.abs().sum() > 0


def test_global_block_under_torch_compile_builds_its_constants_in_the_graph():
    """Under torch.compile the cached index and mask are built inside the graph (no cache for dynamo to skip, and
    no warning about one); values and gradients as in eager."""
    block = GlobalBlock(nn.Conv2d, 16, 2, (4, 4), shift=True)
    x = torch.randn(1, 16, 14, 13, requires_grad=True)
    torch._dynamo.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = torch.compile(block, backend="aot_eager", fullgraph=True)(x)
    assert not [w for w in caught if "lru_cache" in str(w.message)]
    torch.testing.assert_close(out, block(x))
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, torch.autograd.grad(block(x).sum(), x)[0])
