"""A top-down camera over a point-robot arena, rendered by pybullet's TinyRenderer.

The image is square and covers the arena's bounds (the larger side plus
MARGIN on every side, so outer walls show), centred on the arena. Image row 0
is the +y edge and column 0 the -x edge: x runs right, y runs up, as on a map.
The camera stands HEIGHT metres above the floor looking straight down through
a frustum that matches that square on the floor: nearly orthographic, the top
of a 0.5 m wall at the arena's edge shows about 5 mm off its foot.
(TinyRenderer draws nothing through an orthographic matrix, hence the height.)

With `supersample` s > 1 each frame is rendered at s times the size and
averaged over s x s blocks, as a real sensor integrates light over each pixel:
a pixel on the robot's edge takes the share of it that covers the pixel, so
the frame changes smoothly as the robot moves less than a pixel. (One sample
per pixel switches whole pixels on and off, in steps of a pixel's width.)

Lighting is flat (ambient only, no shadows): a surface renders as its own
colour from every place in the arena, so a frame depends on where things are,
not on where a light is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from amiagent.sim.quiet import c_output_silenced

with c_output_silenced():  # pybullet prints its build time on import
    import pybullet as p

Bounds = tuple[tuple[float, float], tuple[float, float]]

HEIGHT = 500.0
"""Height (m) of the camera above the floor."""

MARGIN = 0.2
"""Floor (m) shown beyond the bounds on every side: the thickness of the outer walls."""

DEPTH = 2.0
"""Half-depth (m) of the view volume around the floor; everything in the arena is lower than this."""


class TopCamera:
    """Renders (size, size, 3) uint8 top-down frames of the arena inside `bounds` (m).

    `pixel(x, y)` maps world coordinates to (row, col) in pixel units, pixel
    centres at whole numbers, so a disc's pixel centroid lands on its centre's
    `pixel`.
    """

    def __init__(self, bounds: Bounds, size: int, supersample: int = 1):
        (xmin, xmax), (ymin, ymax) = bounds
        self.size = int(size)
        self.supersample = int(supersample)
        self.centre = ((xmin + xmax) / 2, (ymin + ymax) / 2)
        self.span = max(xmax - xmin, ymax - ymin) + 2 * MARGIN
        """Metres the image covers along each axis."""
        half = self.span / 2
        near, far = HEIGHT - DEPTH, HEIGHT + DEPTH
        k = near / HEIGHT  # the floor's half-span seen at the near plane
        # TinyRenderer samples pixel corners, not centres: aiming half a pixel up and right centres them
        shift = 0.5 * self.span / (self.size * self.supersample)
        cx, cy = self.centre[0] + shift, self.centre[1] + shift
        self._view = p.computeViewMatrix([cx, cy, HEIGHT], [cx, cy, 0.0], [0.0, 1.0, 0.0])
        self._proj = p.computeProjectionMatrix(-half * k, half * k, -half * k, half * k, near, far)

    @property
    def metres_per_pixel(self) -> float:
        """Floor distance (m) one pixel covers."""
        return self.span / self.size

    def pixel(self, x: float, y: float) -> tuple[float, float]:
        """(row, col) of the world point (x, y) in pixel units, pixel centres at whole numbers."""
        cx, cy = self.centre
        scale = self.size / self.span
        col = (x - cx) * scale + self.size / 2 - 0.5
        row = (cy - y) * scale + self.size / 2 - 0.5
        return row, col

    def render(self, client: Any) -> np.ndarray:
        """A (size, size, 3) uint8 RGB frame of `client`'s scene as it is now."""
        n, s = self.size * self.supersample, self.supersample
        _, _, rgba, _, _ = client.getCameraImage(
            n, n, self._view, self._proj, renderer=p.ER_TINY_RENDERER, shadow=0,
            lightAmbientCoeff=1.0, lightDiffuseCoeff=0.0, lightSpecularCoeff=0.0,
            flags=p.ER_NO_SEGMENTATION_MASK,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(n, n, 4)[..., :3]
        if s == 1:
            return np.ascontiguousarray(rgb)
        blocks = rgb.reshape(self.size, s, self.size, s, 3).mean(axis=(1, 3), dtype=np.float32)
        return np.rint(blocks).astype(np.uint8)
