"""Autoencoder (optionally variational) for latent-space plots and anomaly scores.

The reconstruction target is the *normalised* network input (N×3×H×W, backbone
mean/std applied), and reconstructions live in that same space (no output activation).

Encoder: the backbone's pooled features (``encoder="backbone"``) or a small conv net
(``encoder="small"``, no backbone needed) → a linear map to the latent (VAE: to μ and
log σ², sampled with the reparameterisation trick while training). Decoder: linear →
``start``×``start`` map → ×2 transposed convolutions → 3×3 conv to 3 channels, resized
(bilinear) to the input size if the doublings overshoot it.

Loss: ``mse`` = mean squared error per input element; VAE adds ``β·kl / (3·H·W)``, where
``kl`` is KL(q(z|x) ‖ N(0, I)) summed over latent dimensions and averaged over the batch,
so both terms are per input element (a β-scaled negative ELBO per element).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tlstudio.ml.tasks.base import TaskModel
from tlstudio.ml.tasks.decoder import conv_bn_relu, eval_mode

if TYPE_CHECKING:
    from tlstudio.ml.backbones import Backbone

EncoderKind = Literal["backbone", "small"]


class SmallEncoder(nn.Module):
    """Four stride-2 conv-BN-ReLU blocks (32, 64, 128, 256 channels), average-pooled to
    4×4 and flattened: N×3×H×W → N×4096."""

    out_features = 256 * 4 * 4

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for nxt in (32, 64, 128, 256):
            layers += [
                nn.Conv2d(c, nxt, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(nxt),
                nn.ReLU(inplace=True),
            ]
            c = nxt
        self.convs = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(4)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.convs(x)).flatten(1)


class ConvDecoder(nn.Module):
    """Latent N×D → image N×3×S×S (S = ``output_size``) through ×2 transposed convolutions."""

    def __init__(self, latent_dim: int, output_size: int, max_start: int = 8):
        super().__init__()
        steps = 0
        while math.ceil(output_size / 2**steps) > max_start:
            steps += 1
        self.start = math.ceil(output_size / 2**steps)
        self.output_size = int(output_size)
        c0 = 256
        self.fc = nn.Linear(latent_dim, c0 * self.start * self.start)
        self.c0 = c0
        layers: list[nn.Module] = []
        c = c0
        for _ in range(steps):
            nxt = max(32, c // 2)
            layers += [
                nn.ConvTranspose2d(c, nxt, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(nxt),
                nn.ReLU(inplace=True),
            ]
            c = nxt
        layers += [conv_bn_relu(c, c), nn.Conv2d(c, 3, 3, padding=1)]
        self.up = nn.Sequential(*layers)

    def forward(self, z: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Latent N×D → N×3×h×w, (h, w) = ``size`` or (S, S)."""
        x = F.relu(self.fc(z)).view(-1, self.c0, self.start, self.start)
        x = self.up(x)
        size = size or (self.output_size, self.output_size)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
        return x


class AutoencoderModel(TaskModel):
    """Encoder → latent (``latent_dim``) → decoder back to the input, in normalised space.

    ``backbone`` is required for ``encoder="backbone"`` and ignored for ``"small"``
    (then ``self.backbone`` is None and there is nothing to freeze).
    ``input_size`` (pixels, square) sets the decoder's native output; inputs of another
    size still work (the reconstruction is resized to them). ``beta`` weighs the KL term.
    """

    task = "autoencode"
    main_metric = "val_loss"
    higher_is_better = False

    def __init__(
        self,
        encoder: EncoderKind = "backbone",
        backbone: Backbone | None = None,
        latent_dim: int = 32,
        vae: bool = False,
        input_size: int = 64,
        beta: float = 1.0,
    ):
        if encoder == "backbone":
            if backbone is None:
                raise ValueError("encoder='backbone' needs a backbone")
            super().__init__(backbone)
            self.encoder: nn.Module | None = None
            features = int(backbone.out_channels)
        elif encoder == "small":
            super().__init__(None)  # type: ignore[arg-type]
            self.encoder = SmallEncoder()
            features = SmallEncoder.out_features
        else:
            raise ValueError(f"unknown encoder {encoder!r}; use 'backbone' or 'small'")
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if input_size < 8:
            raise ValueError(f"input_size must be >= 8 pixels, got {input_size}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.encoder_kind = encoder
        self.latent_dim = int(latent_dim)
        self.vae = bool(vae)
        self.beta = float(beta)
        self.input_size = int(input_size)
        self.to_latent = nn.Linear(features, 2 * latent_dim if vae else latent_dim)
        self.decoder = ConvDecoder(latent_dim, input_size)

    def _features(self, images: Tensor) -> Tensor:
        if self.encoder is not None:
            return self.encoder(images)
        return self.backbone(images)

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """Images → (μ N×D, log σ² N×D or None when not a VAE); μ is the latent itself
        for a plain autoencoder."""
        h = self.to_latent(self._features(images))
        if self.vae:
            mu, logvar = h.chunk(2, dim=1)
            return mu, logvar.clamp(-30.0, 20.0)
        return h, None

    def decode(self, z: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Latent N×D → reconstruction N×3×h×w in normalised input space."""
        return self.decoder(z, size)

    def forward(self, images: Tensor) -> Tensor:
        """Reconstruction N×3×H×W of the normalised images (VAE: sampled in train mode,
        from μ in eval mode)."""
        return self._run(images)[0]

    def _run(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        mu, logvar = self.encode(images)
        z = mu
        if logvar is not None and self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        h, w = images.shape[-2:]
        return self.decode(z, (h, w)), mu, logvar

    def training_step(self, images: Tensor, targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """{"loss", "mse"} and, for a VAE, "kl" (see the module docstring)."""
        recon, mu, logvar = self._run(images)
        mse = F.mse_loss(recon, images)
        out = {"loss": mse, "mse": mse.detach()}
        if logvar is not None:
            mu, logvar = mu.float(), logvar.float()  # exp() overflows float16 under AMP
            kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()
            per_element = images[0].numel()
            out["loss"] = mse + self.beta * kl / per_element
            out["kl"] = kl.detach()
        return out

    @torch.no_grad()
    def predict_step(self, images: Tensor) -> list[dict[str, Any]]:
        """Per image (eval mode): "latent" (D floats; μ for a VAE), "error" (float, mean
        squared reconstruction error in normalised units), "reconstruction" (3×H×W,
        normalised input space)."""
        with eval_mode(self):
            recon, mu, _ = self._run(images)
        recon, mu = recon.float(), mu.float()  # float32 even under autocast
        err = ((recon - images) ** 2).flatten(1).mean(dim=1)
        return [
            {"latent": m, "error": float(e), "reconstruction": r}
            for m, e, r in zip(mu, err, recon, strict=True)
        ]
