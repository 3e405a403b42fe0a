"""The DaGAN training objective, term by term under the original names.

Generator side: ``perceptual``, ``gen_gan``, ``feature_matching``, ``equivariance_value``,
``equivariance_jacobian``, ``kp_distance`` and the optional ``kp_prior``, ``kp_scale`` and
``depth_constraint``. Discriminator side: ``disc_gan``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dagan.config import LossWeights, TrainConfig, TransformConfig
from dagan.nn.common import AntiAliasDownsample, Keypoints, inverse_2x2, make_coordinate_grid
from dagan.nn.discriminator import MultiScaleDiscriminator
from dagan.nn.face_depth import FaceDepthNetwork
from dagan.nn.keypoint_detector import KeypointDetector
from dagan.nn.vgg import VGG19Features


def mean_abs_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a - b).abs().mean()``, keeping for backward an int8 sign map instead of the float difference."""
    if a.shape != b.shape:  # broadcasting: the plain expression reduces the gradients to each shape
        return (a - b).abs().mean()
    return _MeanAbsDifference.apply(a, b)


class _MeanAbsDifference(torch.autograd.Function):
    """The L1 terms on feature maps, which autograd would keep as float differences.

    The perceptual and feature-matching terms take the L1 distance between maps of up to 64
    channels at full size: about 100 MB of differences kept until the backward pass of a 256x256
    batch of 2, at the end of the forward pass, where a training step's memory peaks. The
    gradient of a mean of absolute values needs only the signs; the backward pass runs the same
    arithmetic as autograd's (the mean's gradient, then times the sign), so it is the same to the
    bit, NaN differences included (tests/test_objective.py).
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        difference = a - b
        # torch's own sign of a NaN is 0, as autograd's backward of abs uses it.
        sign = difference.sgn().to(torch.int8)
        ctx.save_for_backward(sign)
        return difference.abs().mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (sign,) = ctx.saved_tensors
        grad_difference = (grad / sign.numel()).expand(sign.shape) * sign.to(grad.dtype)
        needs_a, needs_b = ctx.needs_input_grad
        return grad_difference if needs_a else None, -grad_difference if needs_b else None


class ImagePyramid(nn.Module):
    """The image at each scale, band-limited before subsampling."""

    def __init__(self, scales: tuple[float, ...], channels: int = 3):
        super().__init__()
        self.scales = tuple(scales)
        self.downs = nn.ModuleList(
            nn.Identity() if scale == 1 else AntiAliasDownsample(channels, scale) for scale in self.scales
        )

    def forward(self, image: torch.Tensor) -> dict[float, torch.Tensor]:
        """Map each scale to the resized image."""
        return {scale: down(image) for scale, down in zip(self.scales, self.downs, strict=True)}


class EquivarianceTransform:
    """Random affine + thin-plate-spline warp of the plane [-1, 1]^2, as the original draws it."""

    def __init__(self, theta: torch.Tensor, control_points: torch.Tensor | None, control_params: torch.Tensor | None):
        self.theta = theta  # (B, 2, 3)
        self.control_points = control_points  # (1, P, P, 2) or None
        self.control_params = control_params  # (B, 1, P*P) or None
        self.batch = theta.shape[0]

    @classmethod
    def random(
        cls, batch: int, config: TransformConfig, generator: torch.Generator | None = None, device=None
    ) -> EquivarianceTransform:
        """Draw a transform; a seeded ``generator`` makes it reproducible."""
        noise = torch.randn(batch, 2, 3, generator=generator) * config.sigma_affine
        theta = noise + torch.eye(2, 3).view(1, 2, 3)
        grid = make_coordinate_grid(config.points_tps, config.points_tps, theta).unsqueeze(0)
        params = torch.randn(batch, 1, config.points_tps**2, generator=generator) * config.sigma_tps
        return cls(theta.to(device), grid.to(device), params.to(device))

    def warp_coordinates(self, coordinates: torch.Tensor) -> torch.Tensor:
        """Map (B or 1, N, 2) points through the warp."""
        theta = self.theta.to(coordinates.dtype).unsqueeze(1)
        warped = (torch.matmul(theta[..., :2], coordinates.unsqueeze(-1)) + theta[..., 2:]).squeeze(-1)
        if self.control_params is not None:
            points = self.control_points.to(coordinates.dtype).view(1, 1, -1, 2)
            difference = coordinates.view(coordinates.shape[0], -1, 1, 2) - points
            # |d| as d * sign(d): the same values and gradients, but the Jacobian's second
            # derivative then comes out as plain zeros. abs's comes out as torch's "efficient
            # zero" tensor, whose first sum imports torch._dynamo (150 MB, dagan.pipelines.optim).
            distances = (difference * difference.sign()).sum(-1)
            spline = distances**2 * torch.log(distances + 1e-6) * self.control_params.to(coordinates.dtype)
            warped = warped + spline.sum(dim=2).view(self.batch, coordinates.shape[1], 1)
        return warped

    def transform_frame(self, frame: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
        """Resample a (B, C, H, W) frame through the warp, with reflection padding.

        ``align_corners`` should be the model's grid convention, so that the frame moves exactly as
        ``warp_coordinates`` moves its keypoints.
        """
        h, w = frame.shape[2:]
        grid = make_coordinate_grid(h, w, frame).reshape(1, h * w, 2)
        grid = self.warp_coordinates(grid).view(self.batch, h, w, 2)
        return F.grid_sample(frame, grid, padding_mode="reflection", align_corners=align_corners)

    def jacobian(self, coordinates: torch.Tensor) -> torch.Tensor:
        """d warp / d coordinates at each point, (B, N, 2, 2), differentiable."""
        if not coordinates.requires_grad:
            coordinates = coordinates.detach().requires_grad_(True)
        warped = self.warp_coordinates(coordinates)
        grad_x = torch.autograd.grad(warped[..., 0].sum(), coordinates, create_graph=True)[0]
        grad_y = torch.autograd.grad(warped[..., 1].sum(), coordinates, create_graph=True)[0]
        return torch.stack([grad_x, grad_y], dim=-2)


def _pairwise_distances(value: torch.Tensor) -> torch.Tensor:
    diff = value.unsqueeze(2) - value.unsqueeze(1)
    return torch.sqrt((diff * diff).sum(-1) + 1e-8)


class GeneratorObjective(nn.Module):
    """Keypoint detector + generator forward and every generator-side loss term."""

    def __init__(
        self,
        kp_detector: KeypointDetector,
        generator: nn.Module,
        discriminator: MultiScaleDiscriminator,
        depth: FaceDepthNetwork,
        train: TrainConfig,
        vgg: VGG19Features | None = None,
    ):
        super().__init__()
        self.kp_detector = kp_detector
        self.generator = generator
        self.discriminator = discriminator
        self.depth = depth.eval().requires_grad_(False)
        self.train_config = train
        self.weights: LossWeights = train.loss_weights
        self.pyramid = ImagePyramid(train.scales)
        self.vgg = vgg
        if self._uses_vgg() and vgg is None:
            raise ValueError("the perceptual loss needs VGG19 weights (or perceptual_backbone: l1_pyramid)")

    def _uses_vgg(self) -> bool:
        return sum(self.weights.perceptual) != 0 and self.train_config.perceptual_backbone == "vgg19"

    def train(self, mode: bool = True) -> GeneratorObjective:
        """Train mode for the trained networks; the depth network and VGG stay in eval."""
        super().train(mode)
        self.depth.eval()
        if self.vgg is not None:
            self.vgg.eval()
        return self

    def keypoints(self, image: torch.Tensor, depth: torch.Tensor) -> Keypoints:
        """Keypoints of an image and its depth."""
        return self.kp_detector(torch.cat([image, depth], dim=1))

    def forward(
        self, source: torch.Tensor, driving: torch.Tensor, transform: EquivarianceTransform | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Loss terms (already weighted) and the generator outputs for a batch of frame pairs."""
        generated = self.generate(source, driving)
        return self.loss_terms(source, driving, generated, transform), generated

    def generate(self, source: torch.Tensor, driving: torch.Tensor) -> dict[str, torch.Tensor]:
        """Depths, keypoints and the generator's outputs for driving frames animating sources."""
        depth_source, depth_driving = self.depth(source), self.depth(driving)
        kp_source = self.keypoints(source, depth_source)
        kp_driving = self.keypoints(driving, depth_driving)
        generated = self.generator(source, kp_driving, kp_source, depth_source, depth_driving)
        generated.update(
            {
                "kp_source": kp_source,
                "kp_driving": kp_driving,
                "depth_source": depth_source,
                "depth_driving": depth_driving,
            }
        )
        return generated

    def loss_terms(
        self,
        source: torch.Tensor,
        driving: torch.Tensor,
        generated: dict[str, torch.Tensor],
        transform: EquivarianceTransform | None = None,
    ) -> dict[str, torch.Tensor]:
        """Every generator-side term from ``generate``'s outputs (adds the equivariance outputs to it)."""
        w = self.weights
        kp_source, kp_driving = generated["kp_source"], generated["kp_driving"]
        depth_driving = generated["depth_driving"]
        losses: dict[str, torch.Tensor] = {}
        real = self.pyramid(driving)
        fake = self.pyramid(generated["prediction"])

        if sum(w.perceptual) != 0:
            total = 0.0
            for scale in self.train_config.scales:
                if self.train_config.perceptual_backbone == "vgg19":
                    fake_features, real_features = self.vgg(fake[scale]), self.vgg(real[scale])
                    for weight, a, b in zip(w.perceptual, fake_features, real_features, strict=False):
                        total = total + weight * mean_abs_difference(a, b.detach())
                else:
                    total = total + sum(w.perceptual) * (fake[scale] - real[scale]).abs().mean()
            losses["perceptual"] = total

        if w.generator_gan != 0:
            kp_value = kp_driving.value.detach()
            maps_fake = self.discriminator(fake, kp_value)
            maps_real = self.discriminator(real, kp_value)
            losses["gen_gan"] = sum(w.generator_gan * ((1 - maps_fake[k][1]) ** 2).mean() for k in maps_fake)
            if sum(w.feature_matching) != 0:
                total = 0.0
                for key in maps_fake:
                    for weight, a, b in zip(w.feature_matching, maps_real[key][0], maps_fake[key][0], strict=False):
                        if weight != 0:
                            total = total + weight * mean_abs_difference(a, b)
                losses["feature_matching"] = total

        if w.equivariance_value + w.equivariance_jacobian != 0:
            if transform is None:
                transform = EquivarianceTransform.random(
                    driving.shape[0], self.train_config.transform, device=driving.device
                )
            aligned = self.generator.dense_motion_network.config.align_corners
            transformed = transform.transform_frame(driving, aligned)
            kp_transformed = self.keypoints(transformed, self.depth(transformed))
            generated["transformed_frame"] = transformed
            generated["transformed_kp"] = kp_transformed
            if w.equivariance_value != 0:
                value = (kp_driving.value - transform.warp_coordinates(kp_transformed.value)).abs().mean()
                losses["equivariance_value"] = w.equivariance_value * value
            if w.equivariance_jacobian != 0:
                jacobian = torch.matmul(transform.jacobian(kp_transformed.value), kp_transformed.jacobian)
                product = torch.matmul(inverse_2x2(kp_driving.jacobian), jacobian)
                eye = torch.eye(2, dtype=product.dtype, device=product.device).view(1, 1, 2, 2)
                losses["equivariance_jacobian"] = w.equivariance_jacobian * (eye - product).abs().mean()

        if w.kp_distance:
            k = kp_source.value.shape[1]
            eye = torch.eye(k, dtype=source.dtype, device=source.device)

            def spread(value: torch.Tensor) -> torch.Tensor:
                return (1 - torch.sign(_pairwise_distances(value) + eye * 0.2 - 0.2)).mean()

            losses["kp_distance"] = w.kp_distance * (spread(kp_source.value) + spread(kp_driving.value))

        if w.kp_prior:
            # Keypoints at least 0.1 apart (the original's prior term, averaged).
            close = F.relu(0.1 - _pairwise_distances(kp_source.value)) + F.relu(
                0.1 - _pairwise_distances(kp_driving.value)
            )
            losses["kp_prior"] = w.kp_prior * close.mean()

        if w.kp_scale or w.depth_constraint:
            depth_generated = self.depth(generated["prediction"])
            if w.kp_scale:
                kp_generated = self.keypoints(generated["prediction"], depth_generated)
                spread_generated = (kp_source.value - kp_generated.value.mean(1, keepdim=True)).norm(dim=-1) + 1e-8
                spread_driving = (kp_driving.value - kp_driving.value.mean(1, keepdim=True)).norm(dim=-1) + 1e-8
                ratio = spread_driving / spread_generated
                losses["kp_scale"] = w.kp_scale * (ratio[:, :-1] - ratio[:, 1:]).abs().mean()
            if w.depth_constraint:
                losses["depth_constraint"] = w.depth_constraint * (depth_driving - depth_generated).abs().mean()
        return losses


class DiscriminatorObjective(nn.Module):
    """LSGAN discriminator loss on real driving frames and detached generated frames."""

    def __init__(self, discriminator: MultiScaleDiscriminator, train: TrainConfig):
        super().__init__()
        self.discriminator = discriminator
        self.weight = train.loss_weights.discriminator_gan
        self.pyramid = ImagePyramid(discriminator.scales)

    def forward(self, driving: torch.Tensor, generated: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``disc_gan`` = (1 - D(real))^2 + D(fake)^2, averaged, per scale."""
        kp_value = generated["kp_driving"].value.detach()
        maps_real = self.discriminator(self.pyramid(driving), kp_value)
        maps_fake = self.discriminator(self.pyramid(generated["prediction"].detach()), kp_value)
        total = sum(self.weight * ((1 - maps_real[k][1]) ** 2 + maps_fake[k][1] ** 2).mean() for k in maps_real)
        return {"disc_gan": total}
