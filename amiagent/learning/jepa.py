"""The JEPA world model: an encoder of observations, an action-conditioned latent predictor, and a probe.

Shapes: B batch, K prediction steps, d image-latent size, P proprioceptive
dims fused into the state, A action size, S physical state dims the probe
reads out (x, y, vx, vy for the point robot).

The encoder sees a camera frame (3, 64, 64) in [0, 1] and tracks keypoints
in it (see `Encoder`). The
latent state is `[encoder(frame), proprio]`: the chosen proprioceptive dims
(velocity: one frame cannot show it), normalised, sit beside the image latent
rather than inside the encoder, so the encoder cannot satisfy the
anti-collapse term with proprioception alone and must read the frame. The
predictor is residual over the whole latent: z' = z + f(z, a / a_max); its
targets are the next frame's image latent and the next measured
proprioception. The probe maps detached latents to the physical state; it
never shapes the representation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from amiagent.errors import ConfigError
from amiagent.learning.regularizers import REGULARIZERS, sigreg, vicreg


INITIAL_TEMPERATURE = 10.0
"""Inverse temperature of the keypoints' spatial softmax at initialisation (it is learned)."""


@dataclass(frozen=True)
class JEPAConfig:
    """Architecture and loss settings; stored in every checkpoint.

    `latent_dim` d. `channels`: conv widths (the first layer halves the image).
    `keypoints`: spatial-softmax keypoints the encoder tracks.
    `proprio_dims`: indices of the proprioceptive state fused into the encoder
    (empty: pixels only). `hidden`: predictor width. `probe_hidden`: probe
    width (0: a linear probe, cheap enough to read every imagined state). `horizon` K:
    latent steps predicted from one encoded frame. `stride`: control steps per
    model step (level-1 models: k > 1; the action is the mean over the stride).
    `regularizer`: "vicreg" or "sigreg", weighted `reg_weight`. `target`:
    "stopgrad" (the online encoder, detached) or "ema" (a moving average of it,
    momentum `ema`). `smooth_weight`: weight of the temporal-smoothness term,
    the mean squared change of the image latent between consecutive frames
    (as in PLDM, Sobal et al. 2025): with the anti-collapse term asking every
    dim for unit variance, it makes that variance come from what changes
    slowly (where the robot is) rather than from features that flicker.
    `proprio_weight`: None scores the prediction as one mean squared error over
    all d + P dims; a number scores the image dims' mean and adds the
    proprioceptive dims' mean times this weight, so the P velocity dims, which
    carry the dynamics, count as much as the d image dims together.
    """

    image_size: int = 64
    latent_dim: int = 8
    channels: tuple[int, ...] = (16, 16, 16)
    keypoints: int = 8
    proprio_dims: tuple[int, ...] = (2, 3)
    hidden: int = 128
    probe_hidden: int = 0
    horizon: int = 3
    stride: int = 1
    regularizer: str = "vicreg"
    reg_weight: float = 10.0
    target: str = "stopgrad"
    ema: float = 0.99
    smooth_weight: float = 1.0
    proprio_weight: float | None = None

    def __post_init__(self) -> None:
        if self.regularizer not in REGULARIZERS:
            raise ConfigError(f"jepa: regularizer must be one of {REGULARIZERS}, got {self.regularizer!r}")
        if self.target not in ("stopgrad", "ema"):
            raise ConfigError(f"jepa: target must be 'stopgrad' or 'ema', got {self.target!r}")
        if self.latent_dim < 2 or self.hidden < 8 or self.probe_hidden < 0 or self.horizon < 1 or self.stride < 1:
            raise ConfigError(f"jepa: latent_dim >= 2, hidden >= 8, horizon >= 1, stride >= 1 required, got {self}")
        if not self.channels or self.image_size % 2 or self.keypoints < 1:
            raise ConfigError(f"jepa: channels must be non-empty, image_size even and keypoints >= 1, got "
                              f"{self.channels}, {self.image_size}, {self.keypoints}")
        if self.proprio_weight is not None and not (math.isfinite(self.proprio_weight) and self.proprio_weight >= 0):
            raise ConfigError(f"jepa: proprio_weight must be null or a number >= 0, got {self.proprio_weight}")
        if not 0.0 <= self.ema < 1.0 or self.reg_weight < 0 or self.smooth_weight < 0:
            raise ConfigError(f"jepa: ema in [0, 1), reg_weight and smooth_weight >= 0 required, got {self.ema}, "
                              f"{self.reg_weight}, {self.smooth_weight}")

    def as_dict(self) -> dict:
        """Plain types, for checkpoints and logs."""
        out = asdict(self)
        out["channels"], out["proprio_dims"] = list(self.channels), list(self.proprio_dims)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> JEPAConfig:
        """Inverse of `as_dict`; unknown keys are refused."""
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"jepa: unknown settings {sorted(unknown)}; valid: {sorted(known)}")
        values = dict(values)
        for key in ("channels", "proprio_dims"):
            if key in values:
                values[key] = tuple(int(v) for v in values[key])
        return cls(**values)


class Encoder(nn.Module):
    """(B, 3, H, W) frames in [0, 1] -> (B, d) image latents, through spatial-softmax keypoints.

    Convolutions (one halving the image, the rest keeping its size) make
    `keypoints` feature maps; a spatial softmax turns each into the expected
    (x, y) of where it fires (Levine et al., 2016), and a linear layer mixes
    those 2 x keypoints coordinates into the latent. A keypoint moves smoothly
    and in proportion with what it tracks, so a latent of keypoints varies
    smoothly with the robot's position, where flattened conv features vary with
    its exact pixel pattern and give the predictor nothing it can follow.
    """

    def __init__(self, cfg: JEPAConfig):
        super().__init__()
        layers, width = [], 3
        for i, out in enumerate(cfg.channels):
            stride = 2 if i == 0 else 1
            layers += [nn.Conv2d(width, out, 5 if i == 0 else 3, stride=stride, padding=2 if i == 0 else 1),
                       nn.GroupNorm(min(8, out), out), nn.GELU()]
            width = out
        layers.append(nn.Conv2d(width, cfg.keypoints, 1))
        self.conv = nn.Sequential(*layers)
        # sharp from the start: a map that fires on the robot must move its keypoint, not blur into the mean
        self.log_temperature = nn.Parameter(torch.tensor(math.log(INITIAL_TEMPERATURE)))
        side = cfg.image_size // 2
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()], dim=1), persistent=False)
        self.head = nn.Linear(2 * cfg.keypoints, cfg.latent_dim)

    def keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, keypoints, 2) expected (x, y) in [-1, 1] of each feature map."""
        maps = self.conv(frames).flatten(2)                                   # (B, C, h*w)
        weights = torch.softmax(maps * self.log_temperature.exp(), dim=-1)
        return weights @ self.grid                                         # (B, C, 2)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.keypoints(frames).flatten(1))


class Predictor(nn.Module):
    """(B, d + P) latent and (B, A) normalised action -> (B, d + P) next latent, as a residual."""

    def __init__(self, cfg: JEPAConfig, action_dim: int):
        super().__init__()
        size = cfg.latent_dim + len(cfg.proprio_dims)
        self.net = nn.Sequential(
            nn.Linear(size + action_dim, cfg.hidden), nn.GELU(),
            nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(),
            nn.Linear(cfg.hidden, size),
        )

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return z + self.net(torch.cat([z, a], dim=-1))


class Probe(nn.Module):
    """(B, d + P) latents -> (B, S) physical state, in the data's units (normalised inside)."""

    def __init__(self, cfg: JEPAConfig, state_dim: int):
        super().__init__()
        size = cfg.latent_dim + len(cfg.proprio_dims)
        if cfg.probe_hidden:
            self.net = nn.Sequential(nn.Linear(size, cfg.probe_hidden), nn.GELU(), nn.Linear(cfg.probe_hidden, state_dim))
        else:
            self.net = nn.Linear(size, state_dim)
        self.register_buffer("mean", torch.zeros(state_dim))
        self.register_buffer("scale", torch.ones(state_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z) * self.scale + self.mean


@dataclass
class Normalizer:
    """Scales the data's raw values to what the networks see: actions to [-1, 1], proprioception by its std."""

    action_scale: torch.Tensor
    proprio_mean: torch.Tensor
    proprio_scale: torch.Tensor

    def actions(self, a: torch.Tensor) -> torch.Tensor:
        return a / self.action_scale

    def proprio(self, p: torch.Tensor) -> torch.Tensor:
        return (p - self.proprio_mean) / self.proprio_scale


class JEPA(nn.Module):
    """Encoder + predictor + probe (+ EMA target encoder), with the training loss.

    `norm` holds the data's scales; they are buffers, so a checkpoint carries them.
    """

    def __init__(self, cfg: JEPAConfig, action_dim: int, state_dim: int, norm: Normalizer):
        super().__init__()
        self.cfg, self.action_dim, self.state_dim = cfg, action_dim, state_dim
        self.encoder = Encoder(cfg)
        self.predictor = Predictor(cfg, action_dim)
        self.probe = Probe(cfg, state_dim)
        self.target = None
        if cfg.target == "ema":
            self.target = Encoder(cfg)
            self.target.load_state_dict(self.encoder.state_dict())
            self.target.requires_grad_(False)
        for name in ("action_scale", "proprio_mean", "proprio_scale"):
            self.register_buffer(name, getattr(norm, name).clone().float())

    @property
    def latent_size(self) -> int:
        """d + P: the image latent and the fused proprioception."""
        return self.cfg.latent_dim + len(self.cfg.proprio_dims)

    # ------------------------------------------------------------------ inference

    def encode(self, frames: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """`frames` (B, H, W, 3) uint8 or (B, 3, H, W) float in [0, 1]; `state` (B, S) raw -> (B, d + P)."""
        return torch.cat([self.encoder(as_float_frames(frames)), self._proprio(state)], dim=1)

    def step(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """`z` (B, d), `action` (B, A) raw -> (B, d) latent one model step later."""
        return self.predictor(z, action / self.action_scale)

    def _proprio(self, state: torch.Tensor) -> torch.Tensor:
        dims = list(self.cfg.proprio_dims)
        if not dims:
            return state.new_zeros(state.shape[0], 0)
        return (state[:, dims] - self.proprio_mean) / self.proprio_scale

    # ------------------------------------------------------------------ training

    def loss(self, frames: torch.Tensor, states: torch.Tensor, actions: torch.Tensor,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """`frames` (B, K+1, H, W, 3) uint8, `states` (B, K+1, S), `actions` (B, K, A) -> loss and its parts.

        Prediction: roll the predictor K steps from the first frame's latent,
        compare with the target encoder's latents of the next frames (mean
        squared error per dim). Regulariser: on the online latents of every
        frame. Probe: on detached latents, so it reads the representation
        without shaping it.
        """
        b, k1 = frames.shape[:2]
        flat_frames = as_float_frames(frames.reshape(b * k1, *frames.shape[2:]))
        flat_states = states.reshape(b * k1, -1)
        image = self.encoder(flat_frames)                                  # (B (K+1), d)
        proprio = self._proprio(flat_states)
        z = torch.cat([image, proprio], dim=1).reshape(b, k1, -1)
        if self.target is None:
            targets = z[:, 1:].detach()
        else:
            with torch.no_grad():
                targets = torch.cat([self.target(flat_frames), proprio], dim=1).reshape(b, k1, -1)[:, 1:]
        current, predicted = z[:, 0], []
        acts = actions / self.action_scale
        for step in range(k1 - 1):
            current = self.predictor(current, acts[:, step])
            predicted.append(current)
        errors = (torch.stack(predicted, dim=1) - targets).pow(2)             # (B, K, d + P)
        d = self.cfg.latent_dim
        if self.cfg.proprio_weight is None or errors.shape[-1] == d:
            prediction = errors.mean()
        else:
            prediction = errors[..., :d].mean() + self.cfg.proprio_weight * errors[..., d:].mean()
        flat_z = z.reshape(b * k1, -1)
        reg = vicreg(image) if self.cfg.regularizer == "vicreg" else sigreg(image, generator=generator)
        steps = image.reshape(b, k1, -1)
        smooth = (steps[:, 1:] - steps[:, :-1]).pow(2).mean()
        probe_pred = self.probe(flat_z.detach())
        probe = ((probe_pred - flat_states) / self.probe.scale).pow(2).mean()
        total = prediction + self.cfg.reg_weight * reg + self.cfg.smooth_weight * smooth + probe
        parts = {"loss": total.item(), "prediction": prediction.item(), "regularizer": reg.item(),
                 "smoothness": smooth.item(), "probe": probe.item()}
        return total, parts

    @torch.no_grad()
    def update_target(self) -> None:
        """Move the EMA target encoder toward the online one (no-op for stop-gradient)."""
        if self.target is None:
            return
        m = self.cfg.ema
        for tp, op in zip(self.target.parameters(), self.encoder.parameters()):
            tp.mul_(m).add_(op.detach(), alpha=1 - m)


def as_float_frames(frames: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [0, 1]; float (B, 3, H, W) passes through."""
    if frames.dtype == torch.uint8:
        return frames.permute(0, 3, 1, 2).float().div_(255.0)
    return frames
