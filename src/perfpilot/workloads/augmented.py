"""Built-in workload ``augmented``: a small CNN whose input pipeline does the heavy lifting.

Images are scikit-learn's digits (no download) upscaled to 40x40 and, in the Dataset's
``__getitem__``, put through a typical per-sample CPU augmentation chain written with torch
ops: random resized crop to 32x32, random rotation and shear, elastic distortion, random
ink/paper colours, colour jitter (brightness, contrast, saturation), random Gaussian blur,
random erasing and Gaussian noise. The model is deliberately modest, so with
``num_workers=0`` the baseline waits on data most of each step and DataLoader workers speed
it up: the loader stage's showcase.

Augmentation draws from torch's global RNG, which DataLoader seeds differently in every
worker. Validation images are whole digits in random colours drawn once from a fixed
generator (no other augmentation, as usual for evaluation), so the metric is deterministic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from perfpilot.plan import Plan
from perfpilot.workload import Workload
from perfpilot.workloads import digits
from perfpilot.workloads._common import TensorPairs, accuracy, adam, classification_loss

BASE = 40  # side of the upscaled source image; crops are taken from it
SIZE = 32  # side of the augmented image the model sees
MEAN, STD = 0.5, 0.25


def _uniform(lo: float, hi: float, gen: torch.Generator | None) -> float:
    return lo + (hi - lo) * torch.rand((), generator=gen).item()


def _resized_crop(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Crop 60-100% of the area at aspect 3/4..4/3 and resize to SIZE (x: 1,C,BASE,BASE)."""
    area = _uniform(0.6, 1.0, gen)
    ratio = math.exp(_uniform(math.log(3 / 4), math.log(4 / 3), gen))
    w = min(BASE, round(BASE * math.sqrt(area * ratio)))
    h = min(BASE, round(BASE * math.sqrt(area / ratio)))
    top = int(torch.randint(0, BASE - h + 1, (), generator=gen))
    left = int(torch.randint(0, BASE - w + 1, (), generator=gen))
    crop = x[..., top : top + h, left : left + w]
    return F.interpolate(crop, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def _rotate(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Rotate by up to 20 degrees either way with a little shear (x: 1,C,H,W)."""
    a = math.radians(_uniform(-20.0, 20.0, gen))
    s = _uniform(-0.15, 0.15, gen)
    theta = torch.tensor([[math.cos(a), -math.sin(a) + s, 0.0], [math.sin(a), math.cos(a), 0.0]])
    grid = F.affine_grid(theta[None], list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    k = torch.exp(-((torch.arange(float(size)) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    return (k[:, None] * k[None, :]) / k.sum() ** 2


def _elastic(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Elastic distortion (Simard et al., 2003): a smoothed random displacement field of up
    to a few pixels, the classic augmentation for handwritten digits (x: 1,C,H,W)."""
    h, w = x.shape[-2:]
    field = torch.randn(1, 2, h, w, generator=gen)
    field = F.conv2d(field, _gaussian_kernel(9, 3.0).expand(2, 1, 9, 9), padding=4, groups=2)
    field = field / field.abs().amax().clamp_min(1e-6) * (_uniform(1.0, 2.5, gen) * 2 / h)
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    grid = F.affine_grid(identity, list(x.shape), align_corners=False) + field.permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _colorize(mask: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Paint a 1,H,W ink mask in a random paper colour and an ink colour that differs from
    it by 0.35..0.65 in every channel (cyclically), so the digit always stays readable."""
    paper = torch.rand(3, generator=gen)
    ink = (paper + 0.35 + 0.3 * torch.rand(3, generator=gen)) % 1.0
    m = mask[0].clamp(0.0, 1.0)
    return paper[:, None, None] * (1.0 - m) + ink[:, None, None] * m


def _jitter(img: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Brightness, contrast and saturation jitter of +-25% (img: 3,H,W in [0,1])."""
    img = img * _uniform(0.75, 1.25, gen)
    mean = img.mean()
    img = (img - mean) * _uniform(0.75, 1.25, gen) + mean
    gray = img.mean(dim=0, keepdim=True)
    return (img - gray) * _uniform(0.75, 1.25, gen) + gray


def _blur(img: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Gaussian blur with sigma 0.3..1.2 (depthwise 5x5 convolution)."""
    k = _gaussian_kernel(5, _uniform(0.3, 1.2, gen))
    return F.conv2d(img[None], k.expand(3, 1, 5, 5), padding=2, groups=3)[0]


def _erase(img: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Fill a random rectangle of 2-12% of the image with noise (random erasing)."""
    side = round(SIZE * math.sqrt(_uniform(0.02, 0.12, gen)))
    top = int(torch.randint(0, SIZE - side + 1, (), generator=gen))
    left = int(torch.randint(0, SIZE - side + 1, (), generator=gen))
    img = img.clone()
    img[:, top : top + side, left : left + side] = torch.rand(3, side, side, generator=gen)
    return img


def augment(source: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """One augmented, normalized 3xSIZExSIZE float32 image from a 1xBASExBASE ink mask."""
    x = _elastic(_rotate(_resized_crop(source[None], gen), gen), gen)
    img = _colorize(x[0], gen)
    img = _jitter(img, gen)
    if torch.rand((), generator=gen) < 0.5:
        img = _blur(img, gen)
    if torch.rand((), generator=gen) < 0.5:
        img = _erase(img, gen)
    img = img + 0.04 * torch.randn(img.shape, generator=gen)
    return (img.clamp(0.0, 1.0) - MEAN) / STD


def _sources(part: TensorPairs) -> torch.Tensor:
    return F.interpolate(part.x, size=(BASE, BASE), mode="bilinear", align_corners=False)


class AugmentedDigits(Dataset):
    """Training set: every ``__getitem__`` draws a fresh augmentation (global torch RNG)."""

    def __init__(self, sources: torch.Tensor, labels: torch.Tensor) -> None:
        self.sources, self.labels = sources, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return augment(self.sources[i]), self.labels[i]


def train_data() -> AugmentedDigits:
    part = digits.train_data()
    return AugmentedDigits(_sources(part), part.y)


def val_data() -> TensorPairs:
    """The digits validation split: whole images, coloured with a fixed generator, no
    geometric or photometric augmentation (as usual for evaluation)."""
    part = digits.val_data()
    gen = torch.Generator().manual_seed(1234)
    sources = F.interpolate(part.x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    images = torch.stack([(_colorize(s, gen) - MEAN) / STD for s in sources])
    return TensorPairs(images, part.y)


def model() -> nn.Module:
    """Four conv-BN-ReLU-pool stages (8 to 64 channels), global average pool, linear."""
    layers: list[nn.Module] = []
    for c_in, c_out in ((3, 8), (8, 16), (16, 32), (32, 64)):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def workload() -> Workload:
    return Workload(
        name="augmented",
        model=model,
        train_data=train_data,
        val_data=val_data,
        loss=classification_loss,
        optimizer=adam,
        metric=accuracy,
        metric_name="val_accuracy",
        direction="max",
        target=0.9,
        baseline=Plan(batch_size=64, lr=1e-3),
        description=(
            "small CNN on 32x32 colour digits with heavy per-sample CPU augmentation "
            "(input-bound at num_workers=0); target 90% val accuracy"
        ),
    )
