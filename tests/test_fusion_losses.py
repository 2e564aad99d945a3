"""Fuse4Seg fusion losses on hand-made images with known answers, 2D and 3D."""
import pytest
import torch

from contrast_reference import region_contrast, surrounding
from nnunet_fuse.imagefusion.losses import (correlation, decomposition_loss, gradient_loss, gradient_magnitude,
                                            intensity_loss, reconstruction_loss, region_contrast_loss,
                                            region_contrasts, sobel_gradients, ssim)

SHAPES = {2: (12, 14), 3: (8, 10, 12)}


def ramp(shape, slopes, offset=0.0):
    """offset + Σ_d slope_d · x_d on a grid of shape: (1, 1, *shape), float64."""
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in shape], indexing="ij")
    return (offset + sum(s * g for s, g in zip(slopes, grids)))[None, None]


@pytest.mark.parametrize("dims", [2, 3])
def test_sobel_recovers_the_slopes_of_a_ramp(dims):
    slopes = [0.5, -2.0, 3.0][:dims]
    grads = sobel_gradients(ramp(SHAPES[dims], slopes))
    assert grads.shape == (1, 1, dims, *SHAPES[dims])
    interior = (slice(None), slice(None), slice(None)) + (slice(1, -1),) * dims
    for d, slope in enumerate(slopes):
        torch.testing.assert_close(grads[interior][:, :, d], torch.full_like(grads[interior][:, :, d], slope))
    torch.testing.assert_close(gradient_magnitude(ramp(SHAPES[dims], slopes))[interior[:2] + interior[3:]],
                               torch.full_like(grads[interior][:, :, 0], sum(abs(s) for s in slopes)))
    assert sobel_gradients(torch.full((2, 3, *SHAPES[dims]), 0.7)).abs().max() < 1e-6  # constant: no edges


@pytest.mark.parametrize("dims", [2, 3])
def test_intensity_and_gradient_losses(dims):
    torch.manual_seed(0)
    images = torch.rand(2, 3, *SHAPES[dims], dtype=torch.float64)
    maximum = images.amax(dim=1, keepdim=True)
    assert intensity_loss(maximum, images) == 0
    torch.testing.assert_close(intensity_loss(maximum - 0.25, images), torch.tensor(0.25, dtype=torch.float64))
    # identical edges in every modality: the fused image with the same edges has zero gradient loss
    edge = ramp(SHAPES[dims], [0.1] * dims)
    same_edges = torch.cat([edge, edge + 0.3], dim=1)  # shifted intensities, same gradients
    assert gradient_loss(edge, same_edges) < 1e-12
    assert gradient_loss(torch.zeros_like(edge), same_edges) > 0


def test_gradient_loss_takes_the_strongest_edge():
    weak, strong = ramp((10, 10), [0.1, 0.0]), ramp((10, 10), [0.0, 0.4])
    images = torch.cat([weak, strong], dim=1)
    assert gradient_loss(strong, images) < gradient_loss(weak, images)


def test_correlation_and_decomposition_loss():
    torch.manual_seed(0)
    x = torch.randn(4, 2, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(correlation(x, 2 * x + 3), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(correlation(x, -x), -torch.ones(4, dtype=torch.float64))
    # identical details and bases: cc = 1 for both → 1 / 2.01
    torch.testing.assert_close(decomposition_loss([x, x], [x, x]), torch.tensor(1 / 2.01, dtype=torch.float64))
    # details uncorrelated (orthogonal patterns): the loss vanishes
    a = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    a[..., 0, 0], a[..., 1, 1] = 1, -1
    b = torch.zeros_like(a)
    b[..., 0, 1], b[..., 1, 0] = 1, -1
    assert decomposition_loss([a, a], [a, b]).abs() < 1e-12
    # three modalities: the mean over the three pairs
    expected = (1 / 2.01 + 0 + 0) / 3
    torch.testing.assert_close(decomposition_loss([a, a, a], [a, a, b]), torch.tensor(expected, dtype=torch.float64))
    with pytest.raises(ValueError, match="N >= 2"):
        decomposition_loss([x], [x])


@pytest.mark.parametrize("dims", [2, 3])
def test_ssim_known_answers(dims):
    torch.manual_seed(0)
    x = torch.rand(2, 1, *SHAPES[dims], dtype=torch.float64)
    assert ssim(x, x) == 1
    a, b = 0.2, 0.7
    constant = lambda v: torch.full((1, 1, *SHAPES[dims]), v, dtype=torch.float64)  # noqa: E731
    c1 = 0.01 ** 2
    torch.testing.assert_close(ssim(constant(a), constant(b)),
                               torch.tensor((2 * a * b + c1) / (a * a + b * b + c1), dtype=torch.float64))
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    noisier = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    assert 1 > ssim(x, noisy) > ssim(x, noisier)
    assert reconstruction_loss(x, x) == 0
    assert reconstruction_loss(x, noisier) > reconstruction_loss(x, noisy) > 0


def test_losses_reject_bad_shapes_and_give_gradients():
    with pytest.raises(ValueError, match="2 or 3 spatial axes"):
        sobel_gradients(torch.zeros(1, 1, 8))
    with pytest.raises(ValueError, match="equal shapes"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))
    fused = torch.rand(1, 1, 8, 8, requires_grad=True)
    images = torch.rand(1, 2, 8, 8)
    loss = intensity_loss(fused, images) + gradient_loss(fused, images) + reconstruction_loss(fused, images[:, :1])
    loss.backward()
    assert fused.grad is not None and fused.grad.abs().sum() > 0


def test_decomposition_loss_keeps_two_maps_per_modality():
    """The decomposition loss centres each modality's base and detail features once: for the backward it keeps 2N
    feature maps (N modalities), not 4 per modality pair (24 for N = 4), which the memory budget would not count."""
    from nnunet_fuse.profiling import forward_kept_bytes

    for n in (2, 4):
        base = [torch.rand(1, 8, 16, 16, requires_grad=True) for _ in range(n)]
        detail = [torch.rand(1, 8, 16, 16, requires_grad=True) for _ in range(n)]
        kept_maps = forward_kept_bytes(lambda: decomposition_loss(base, detail)) / 4 / (8 * 16 * 16)
        assert kept_maps == pytest.approx(2 * n, abs=0.1)


def two_regions_two_modalities(size: int = 40, seed: int = 0):
    """A shows region 1 (left half), B region 2 (right half), each over uniform noise: images (1, 2, S, S) float64,
    regions (1, 2, S, S) boolean, and the fusion that takes each half from the modality that shows its region."""
    g = torch.Generator().manual_seed(seed)
    images = 0.3 + 0.1 * torch.rand(1, 2, size, size, generator=g, dtype=torch.float64)
    regions = torch.zeros(1, 2, size, size, dtype=torch.bool)
    regions[0, 0, 15:25, 4:12] = True
    regions[0, 1, 15:25, 28:36] = True
    images[0, 0][regions[0, 0]] += 0.4
    images[0, 1][regions[0, 1]] += 0.2
    selected = torch.cat([images[..., : size // 2][:, :1], images[..., size // 2:][:, 1:]], dim=-1)
    return images, regions, selected


def test_region_contrast_loss_known_answers_and_gradient():
    """0 for the fusion that keeps each region's best modality (|target − kept|, target 1; 0.2 at target 1.2); for
    the average exactly the mean shortfall of its kept share, for an image that paints the regions brighter exactly
    the mean excess (against an independent numpy reference); an analytic gradient that matches finite differences."""
    images, regions, selected = two_regions_two_modalities()
    assert float(region_contrast_loss(selected, images, regions)) == pytest.approx(0.0, abs=1e-12)
    average = images.mean(1, keepdim=True)
    shares = []
    for r in range(2):
        mask = regions[0, r].numpy()
        around = surrounding(mask)
        best = max(region_contrast(images[0, c].numpy(), mask, around) for c in range(2))
        shares.append(region_contrast(average[0, 0].numpy(), mask, around) / best)
        assert float(region_contrasts(images, regions)[0, r].max()) == pytest.approx(best, rel=1e-9)
    assert max(shares) < 0.9  # the average halves what one modality shows
    expected = sum(1 - share for share in shares) / 2
    assert float(region_contrast_loss(average, images, regions)) == pytest.approx(expected, rel=1e-9)
    painted = selected + 0.5 * regions.any(1, keepdim=True)  # both regions far brighter than any modality shows them
    excess = []
    for r in range(2):
        mask = regions[0, r].numpy()
        around = surrounding(mask)
        best = max(region_contrast(images[0, c].numpy(), mask, around) for c in range(2))
        excess.append(region_contrast(painted[0, 0].numpy(), mask, around) / best - 1)
    assert min(excess) > 0.5
    assert float(region_contrast_loss(painted, images, regions)) == pytest.approx(sum(excess) / 2, rel=1e-9)
    # a target share t: |t − kept| (the selected modality now falls short by t − 1, the painting exceeds by less)
    assert float(region_contrast_loss(selected, images, regions, target=1.2)) == pytest.approx(0.2, rel=1e-9)
    assert float(region_contrast_loss(painted, images, regions, target=1.2)) == pytest.approx(
        sum(abs(e - 0.2) for e in excess) / 2, rel=1e-9)
    # below the target share: the analytic gradient equals central finite differences along random directions,
    # and a step against it lowers the loss
    fused = (0.5 * average + 0.5 * selected).requires_grad_(True)
    region_contrast_loss(fused, images, regions).backward()
    loss_at = lambda f: float(region_contrast_loss(f, images, regions))  # noqa: E731
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        direction = torch.randn(fused.shape, generator=g, dtype=torch.float64)
        numeric = (loss_at(fused.detach() + 1e-6 * direction) - loss_at(fused.detach() - 1e-6 * direction)) / 2e-6
        assert float((fused.grad * direction).sum()) == pytest.approx(numeric, rel=1e-5)
    assert loss_at(fused.detach() - 1e-3 * fused.grad / fused.grad.abs().max()) < loss_at(fused.detach())
    # no region present: 0, and still a graph to backpropagate
    empty = region_contrast_loss(fused, images, torch.zeros_like(regions))
    assert float(empty.detach()) == 0.0 and empty.requires_grad
