"""GAN baseline (ESRGAN recipe, Wang et al. 2018, as far as a CPU budget allows).

The generator is the regression network (EDSR-lite, residual over bicubic), fine-tuned from a
regression model with L1 plus a relativistic-average adversarial loss from a patch discriminator.
No VGG loss: there are no ImageNet weights here. At inference a GAN is one forward pass, like the
regression model, so it shares ``RegressionSR``'s upscale; what differs is the training loss.

Training uses one optimizer for both networks: the generator's adversarial term is computed with
the discriminator's parameters detached (``torch.func.functional_call``) and the discriminator's
term on detached generator outputs, so one backward pass gives each network exactly its own
gradient. That keeps the shared ``Trainer`` (checkpoints, EMA, resume, accelerate) unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from sr_models.regression import EDSRLite, RegressionSR


class PatchDiscriminator(nn.Module):
    """A small fully-convolutional discriminator: one logit per receptive field of about 46 px.

    No normalisation layers, so its parameters can be detached for the generator's loss without
    touching running statistics."""

    def __init__(self, channels: int = 32, levels: int = 3):
        super().__init__()
        layers, width = [nn.Conv2d(3, channels, 3, padding=1), nn.LeakyReLU(0.2)], channels
        for _ in range(levels):
            wider = min(width * 2, 128)
            layers += [nn.Conv2d(width, wider, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            layers += [nn.Conv2d(wider, wider, 3, padding=1), nn.LeakyReLU(0.2)]
            width = wider
        layers.append(nn.Conv2d(width, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image * 2 - 1)


class GanPair(nn.Module):
    """Generator and discriminator trained together (one module, one optimizer)."""

    def __init__(self, generator: EDSRLite, discriminator: PatchDiscriminator):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator


def relativistic_losses(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RaGAN losses (Jolicoeur-Martineau 2018) from discriminator logits: (for D, for G)."""
    real_rel, fake_rel = real - fake.mean(), fake - real.mean()
    ones, zeros = torch.ones_like(real_rel), torch.zeros_like(fake_rel)
    bce = F.binary_cross_entropy_with_logits
    return bce(real_rel, ones) + bce(fake_rel, zeros), bce(real_rel, zeros) + bce(fake_rel, ones)


def gan_loss(pair: GanPair, lr: torch.Tensor, hr: torch.Tensor, adv_weight: float) -> torch.Tensor:
    """L1 + adv_weight * RaGAN for the generator, plus RaGAN for the discriminator, in one scalar
    whose gradient is each network's own loss gradient (see the module docstring)."""
    sr = pair.generator(lr)
    disc = pair.discriminator
    d_loss, _ = relativistic_losses(disc(hr), disc(sr.detach()))
    frozen = {k: v.detach() for k, v in disc.named_parameters()}
    _, g_adv = relativistic_losses(functional_call(disc, frozen, (hr,)), functional_call(disc, frozen, (sr,)))
    return F.l1_loss(sr, hr) + adv_weight * g_adv + d_loss


class GanSR(RegressionSR):
    family = "gan"
    description = "EDSR-lite fine-tuned with L1 + relativistic adversarial loss, one forward pass"
