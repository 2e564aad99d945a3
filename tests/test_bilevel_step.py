"""Fuse4Seg's bi-level step (imagefusion/bilevel.py) on a small 2D Fuse4SegNet: the unrolled leader gradient against
the exact second-order one (double backward through the follower's SGD step), and a leader that moves the fused
image away from the average where the modalities disagree."""
import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from nnunet_fuse.architectures import Fuse4SegNet
from nnunet_fuse.imagefusion.bilevel import BilevelSettings, bilevel_step, step_per_gradient


def small_net(seed: int = 0) -> Fuse4SegNet:
    torch.manual_seed(seed)
    net = Fuse4SegNet(2, 3, "dynamic_network_architectures.architectures.unet.PlainConvUNet", fusion_channels=4,
                      n_stages=2, features_per_stage=[4, 8], conv_op=nn.Conv2d, kernel_sizes=[[3, 3], [3, 3]],
                      strides=[[1, 1], [2, 2]], n_conv_per_stage=[1, 1], n_conv_per_stage_decoder=[1],
                      conv_bias=True, norm_op=nn.InstanceNorm2d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                      nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": False},
                      fusion_intensity_ranges=[[0.0, 1.0], [0.0, 1.0]])
    return net


def disagreeing_modalities(batch: int = 4, size: int = 24, seed: int = 0):
    """Channel A shows a square (label 1) that B does not; B shows a disc (label 2) that A does not: (B, 2, S, S)
    in [0, 1], labels (B, S, S), and the masks of the two structures."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    data = 0.2 + 0.05 * torch.rand(batch, 2, size, size, generator=g)
    labels = torch.zeros(batch, size, size, dtype=torch.long)
    for b in range(batch):
        x0, y0 = (int(v) for v in torch.randint(2, size // 2 - 6, (2,), generator=g))
        square = (yy >= y0) & (yy < y0 + 6) & (xx >= x0) & (xx < x0 + 6)
        cy, cx = (int(v) for v in torch.randint(size // 2 + 3, size - 4, (2,), generator=g))
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 9
        data[b, 0][square] = 0.9
        data[b, 1][disc] = 0.9
        labels[b][square], labels[b][disc] = 1, 2
    return data, labels


def fusion_gradients(net: Fuse4SegNet, data, labels, settings: BilevelSettings, lr=0.05, momentum=0.0,
                     nesterov=False):
    """The fusion network's gradient in one bilevel_step (the fusion optimiser's lr 0: nothing moves)."""
    seg_opt = torch.optim.SGD(net.segmentation.parameters(), lr, momentum=momentum, nesterov=nesterov)
    fusion_opt = torch.optim.SGD(net.fusion.parameters(), 0.0)
    bilevel_step(net, data, labels, F.cross_entropy, seg_opt, fusion_opt, settings, pretraining=False)
    return [p.grad.clone() for p in net.fusion.parameters()]


def exact_gradients(net: Fuse4SegNet, data, labels, step_size: float, leader_weight: float, response: bool = True):
    """λ d/dφ L(θ1(φ), F(φ)) with θ1 = θ0 − step_size ∇θ L(θ0, F(φ)) by double backward (the follower's response
    dropped with response=False: θ1 then enters as a constant)."""
    fused = net.fusion(data)
    params = dict(net.segmentation.named_parameters())
    loss0 = F.cross_entropy(functional_call(net.segmentation, params, (fused,)), labels)
    grads = torch.autograd.grad(loss0, list(params.values()), create_graph=response)
    after = {k: p - step_size * g for (k, p), g in zip(params.items(), grads)}
    if not response:
        after = {k: v.detach() for k, v in after.items()}
    loss1 = F.cross_entropy(functional_call(net.segmentation, after, (fused,)), labels)
    return torch.autograd.grad(leader_weight * loss1, list(net.fusion.parameters()), allow_unused=True)


def relative_error(a, b) -> float:
    a = torch.cat([x.flatten() for x in a])
    b = torch.cat([torch.zeros_like(y).flatten() if y is None else y.flatten() for y in b])
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.99, True)])  # plain SGD; nnU-Net's
def test_unrolled_leader_gradient_is_the_exact_unrolled_one(momentum, nesterov):
    net = small_net().double()
    nn.init.normal_(net.fusion.decoder[-1].weight, std=0.3)  # a trained correction: every fusion layer has a gradient
    data, labels = disagreeing_modalities()
    data = data.double()
    lr, weight = 0.05, 0.5
    settings = BilevelSettings(leader_weight=weight, intensity_weight=0, gradient_weight=0, decomposition_weight=0,
                               clip_norm=1e9, leader_gradient="unrolled", finite_difference=1e-5)
    optimizer = torch.optim.SGD(net.segmentation.parameters(), lr, momentum=momentum, nesterov=nesterov)
    step_size = step_per_gradient(optimizer)
    assert step_size == pytest.approx(lr * (1.99 if nesterov else 1))
    exact = exact_gradients(copy.deepcopy(net), data, labels, step_size, weight)
    without_response = exact_gradients(copy.deepcopy(net), data, labels, step_size, weight, response=False)
    first_order = fusion_gradients(copy.deepcopy(net), data, labels,
                                   dataclasses.replace(settings, leader_gradient="first-order"),
                                   lr, momentum, nesterov)
    unrolled = fusion_gradients(net, data, labels, settings, lr, momentum, nesterov)
    names = [n for n, _ in net.fusion.named_parameters()]
    reached = {n for n, g in zip(names, unrolled) if float(g.abs().max()) > 0}
    assert {"encoder.0.0.weight", "decoder.0.0.weight", "decoder.1.weight"} <= reached  # stem to last conv
    assert len(reached) > 0.8 * len(names)  # (at this size a few ReLU6 units of the coupling blocks are dead)
    error = relative_error(unrolled, exact)
    assert error < 1e-4
    # the follower's response is what the test resolves: leaving it out, or the first-order step, is far off
    assert relative_error(without_response, exact) > 100 * error
    assert relative_error(first_order, exact) > 100 * error


def test_unrolled_step_moves_the_follower_as_its_optimiser_does_and_reports_losses():
    """The unrolled step's follower update is exactly one optimiser step on the detached fused image; the
    parameters it probed (θ0 + εv) are restored."""
    net = small_net()
    data, labels = disagreeing_modalities()
    reference = copy.deepcopy(net)
    opt = torch.optim.SGD(net.segmentation.parameters(), 0.05, momentum=0.99, nesterov=True)
    ref_opt = torch.optim.SGD(reference.segmentation.parameters(), 0.05, momentum=0.99, nesterov=True)
    out = bilevel_step(net, data, labels, F.cross_entropy, opt, torch.optim.SGD(net.fusion.parameters(), 0.0),
                       BilevelSettings(leader_gradient="unrolled"), pretraining=False)
    loss = F.cross_entropy(reference.segmentation(reference.fusion(data).detach()), labels)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(reference.segmentation.parameters()), 12.0)
    ref_opt.step()
    for p, q in zip(net.segmentation.parameters(), reference.segmentation.parameters()):
        torch.testing.assert_close(p, q)
    assert float(out["loss"]) == pytest.approx(float(loss.detach()), rel=1e-5)
    assert float(out["leader_loss"]) > 0


def test_settings_are_checked():
    with pytest.raises(ValueError, match="leader_gradient must be one of unrolled, first-order"):
        BilevelSettings(leader_gradient="second-order")
    with pytest.raises(ValueError, match="follower_steps"):
        BilevelSettings(follower_steps=0)
    with pytest.raises(TypeError, match="SGD step"):
        step_per_gradient(torch.optim.Adam([nn.Parameter(torch.zeros(1))]))


@pytest.mark.parametrize("leader_gradient", ["unrolled", "first-order"])
def test_trained_leader_moves_the_fused_image_away_from_the_average_where_modalities_disagree(leader_gradient):
    """A short bi-level training: where one modality shows a structure the other does not, the fused image moves
    away from the modalities' average (which halves the structure's contrast) towards the modality that shows it;
    a dead leader (frozen fusion) leaves it at the average."""
    net = small_net(1)
    data, labels = disagreeing_modalities()
    seg_opt = torch.optim.SGD(net.segmentation.parameters(), 1e-2, momentum=0.99, nesterov=True)
    fusion_opt = torch.optim.AdamW(net.fusion.parameters(), 1e-2)
    settings = BilevelSettings(leader_gradient=leader_gradient)
    for _ in range(40):
        bilevel_step(net, data, labels, F.cross_entropy, seg_opt, fusion_opt, settings, pretraining=False)
    with torch.no_grad():
        fused = net.fusion(data)[:, 0]
    average = data.mean(1)
    shows = torch.where(labels == 1, data[:, 0], data[:, 1])  # the modality that shows each structure
    background = labels == 0
    for structure in (1, 2):
        inside = labels == structure
        contrast = lambda image: float(image[inside].mean() - image[background].mean())  # noqa: E731
        # the average keeps about half the contrast of the modality that shows the structure; the fused image more
        assert contrast(average) == pytest.approx(contrast(shows) / 2, rel=0.1)
        assert contrast(fused) > contrast(average) + 0.2 * contrast(shows), (structure, contrast(fused))
        assert float((fused - average)[inside].abs().mean()) > 0.1


def test_region_contrast_loss_trains_a_fused_image_that_keeps_each_structure_as_its_best_modality_shows_it():
    """contrast_weight > 0: the leader also learns from the labelled regions; after a short training every structure
    stands out of the fused image 0.9–1.25 × as much as in the modality that shows it (the contrast export-fused
    reports), where the average keeps less; without the regions the step refuses to run. Checked where the two
    structures lie apart (beyond each other's surroundings): where they are close, the fused image, which shows both,
    has the other in each one's surroundings, and no image that shows both keeps each one's contrast."""
    from contrast_reference import surrounding
    from nnunet_fuse.imagefusion.metrics import contrast_table, kept_contrast

    data, labels = disagreeing_modalities()
    regions = torch.stack([labels == 1, labels == 2], dim=1)
    settings = BilevelSettings(leader_gradient="unrolled", contrast_weight=4.0)
    net = small_net(1)
    seg_opt = torch.optim.SGD(net.segmentation.parameters(), 1e-2, momentum=0.99, nesterov=True)
    fusion_opt = torch.optim.AdamW(net.fusion.parameters(), 1e-2)
    with pytest.raises(ValueError, match="needs the labelled regions"):
        bilevel_step(net, data, labels, F.cross_entropy, seg_opt, fusion_opt, settings, pretraining=False)
    for _ in range(80):
        bilevel_step(net, data, labels, F.cross_entropy, seg_opt, fusion_opt, settings, pretraining=False,
                     regions=regions)
    with torch.no_grad():
        fused = net.fusion(data)[:, 0]
    apart = [b for b in range(len(data)) if not (surrounding(labels[b].numpy() == 1) & (labels[b].numpy() == 2)).any()]
    assert len(apart) >= 3
    for b in apart:
        images = {"A": data[b, 0].numpy(), "B": data[b, 1].numpy(), "average": data[b].mean(0).numpy(),
                  "fused": fused[b].numpy()}
        table = contrast_table(images, {"square": labels[b].numpy() == 1, "disc": labels[b].numpy() == 2})
        for region, contrasts in table.items():
            assert kept_contrast(contrasts, "average", ["A", "B"]) < 0.85
            assert 0.9 <= kept_contrast(contrasts, "fused", ["A", "B"]) <= 1.25, (b, region, contrasts)


def test_the_contrast_target_reaches_the_leaders_loss():
    """BilevelSettings.contrast_target is the share the region-contrast loss aims at: from the same start (the fused
    image is the average, which keeps less than 1 of either structure's contrast), aiming at 1.2 instead of 1 adds
    contrast_weight × 0.2 to the leader's loss."""
    data, labels = disagreeing_modalities()
    regions = torch.stack([labels == 1, labels == 2], dim=1)
    leader_losses = {}
    for target in (1.0, 1.2):
        net = small_net(0)
        seg_opt = torch.optim.SGD(net.segmentation.parameters(), 1e-2, momentum=0.99, nesterov=True)
        fusion_opt = torch.optim.AdamW(net.fusion.parameters(), 1e-3)
        settings = BilevelSettings(contrast_weight=4.0, contrast_target=target)
        leader_losses[target] = float(bilevel_step(net, data, labels, F.cross_entropy, seg_opt, fusion_opt, settings,
                                                   pretraining=False, regions=regions)["leader_loss"])
    assert leader_losses[1.2] - leader_losses[1.0] == pytest.approx(4.0 * 0.2, rel=1e-4)
