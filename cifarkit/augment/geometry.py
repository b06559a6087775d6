"""The geometry a batch of images is asked for but has not sampled yet, shared by the recipe's
two paths: :class:`cifarkit.augment.host.HostBatch` (TensorFlow) and
:class:`cifarkit.augment.device.DeviceBatch` (``keras.ops``).

A resize, a pad, a window and a mirror are recorded, not applied: :meth:`render` samples them in
one ``crop_windows`` call when an op needs the pixels or the recipe ends, so a resize to 256 never
exists in memory. Geometry that cannot be folded into the pending window (a second crop, a pad
after a resize) renders the pending one first. The two paths differ only in their tensor library,
which each supplies through the three methods at the end.
"""

from __future__ import annotations


class PendingGeometry:
    """Recorded geometry over the batch's pixels ``_pixels`` (float32 in [0, 1], ``count`` images)."""

    def __init__(self, pixels, count, span) -> None:
        self._pixels = pixels
        self.count = count
        self._reset(span)

    def _reset(self, span) -> None:
        self.span = span  # side of the (virtual) image a window is cut from
        self.resize, self.pad, self.pad_mode = None, 0, "REFLECT"
        self.crop = self.offsets = self.flips = None

    @property
    def pending(self) -> bool:
        return self.resize is not None or bool(self.pad) or self.crop is not None or self.flips is not None

    def set_resize(self, size: int) -> None:
        if self.pending:
            self.render()
        self.resize = self.span = size

    def set_pad(self, pixels: int, mode: str) -> None:
        if self.pending:
            self.render()
        self.pad, self.pad_mode = pixels, mode
        self.span = self.span + 2 * pixels

    def set_window(self, crop: int, offsets) -> None:
        if self.crop is not None or self.flips is not None:
            self.render()
        self.crop, self.offsets = crop, offsets

    def set_flips(self, flips) -> None:
        self.flips = flips if self.flips is None else self._not_equal(self.flips, flips)

    def render(self) -> None:
        crop = self.crop if self.crop is not None else self.span
        offsets = self.offsets if self.offsets is not None else self._zeros((self.count, 2), "int32")
        flips = self.flips if self.flips is not None else self._zeros((self.count,), "bool")
        self._pixels = self._sample(crop, offsets, flips)
        self._reset(crop)

    def pixels(self):
        if self.pending:
            self.render()
        return self._pixels

    def map_pixels(self, fn) -> None:
        self._pixels = fn(self.pixels())

    def resample(self, fn, span) -> None:
        """``fn(pixels)`` gives images of a new side ``span`` (boxes resized to one size)."""
        self._pixels = fn(self.pixels())
        self._reset(span)

    # The tensor library's part.

    def _sample(self, crop: int, offsets, flips):
        """The pending geometry's ``crop`` x ``crop`` windows of ``_pixels``."""
        raise NotImplementedError

    def _zeros(self, shape, dtype: str):
        raise NotImplementedError

    def _not_equal(self, a, b):
        raise NotImplementedError
