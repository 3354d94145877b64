"""A compact 1-D CNN for raw vibration windows, in a full and a light variant that aggregate together.

The first convolution is wide (64 taps, stride 8): it acts as a learned band-pass around the structural
resonance that fault impacts excite; the narrow blocks after it find the impact pattern. GroupNorm instead
of BatchNorm: no running statistics, so nothing that depends on one plant's batch makes it into an average.

Both variants share `blocks.0` .. `blocks.{LIGHT_BLOCKS-1}` with identical names and shapes, so those are
averaged across every plant. The full model adds deeper blocks and `head.*` (averaged across full plants);
the light model, for weak edge hardware, stops early and classifies with `light_head.*`, which stays on
the plant (see `BearingTask.local_parameter_patterns`).
"""

from __future__ import annotations

import torch
from torch import nn

from plantfed.tasks.bearing.labels import NUM_CLASSES

#: Output channels of each conv block of the full model.
CHANNELS = (32, 64, 64, 128, 128)
#: The light model keeps this many leading blocks.
LIGHT_BLOCKS = 3


def _block(in_ch: int, out_ch: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(
            in_ch,
            out_ch,
            kernel,
            stride=stride,
            padding=(kernel - stride) // 2 if stride > 1 else kernel // 2,
            bias=False,
        ),
        nn.GroupNorm(min(8, out_ch // 4), out_ch),
        nn.ReLU(inplace=True),
        nn.MaxPool1d(2),
    )


class BearingCNN(nn.Module):
    """Input `[B, 1, W]` normalised acceleration, output `[B, NUM_CLASSES]` logits."""

    def __init__(self, variant: str = "full", num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        if variant not in ("full", "light"):
            raise ValueError(f"unknown model variant {variant!r}; expected 'full' or 'light'")
        self.variant = variant
        depth = len(CHANNELS) if variant == "full" else LIGHT_BLOCKS
        in_channels = (1, *CHANNELS[:-1])
        self.blocks = nn.ModuleList(
            _block(in_channels[i], CHANNELS[i], 64 if i == 0 else 3, 8 if i == 0 else 1) for i in range(depth)
        )
        width = 2 * CHANNELS[depth - 1]  # mean- and max-pooled features
        if variant == "full":
            self.head = nn.Sequential(
                nn.Linear(width, 64), nn.ReLU(inplace=True), nn.Dropout(0.2), nn.Linear(64, num_classes)
            )
        else:
            self.light_head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        features = torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=1)
        return self.head(features) if self.variant == "full" else self.light_head(features)
