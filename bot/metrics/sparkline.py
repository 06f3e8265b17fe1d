"""A one-line sparkline of a metric window, for Slack messages: `sparkline([1, 5, 2])` → "▁█▂".

- Longer series are downsampled to `width` characters by taking the **maximum** of each bucket,
  so a one-sample spike still shows; shorter series are drawn one character per value.
- Bars are scaled from the smallest to the largest finite value: the minimum is ▁, the maximum █.
- A constant series (every finite value equal) is all ▁, whatever its level.
- NaN (a missing sample) is a space; +inf is drawn as █ and -inf as ▁.
- An empty series is "".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["BARS", "sparkline"]

BARS = "▁▂▃▄▅▆▇█"


def _bucket_max(values: Sequence[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return max(present) if present else math.nan


def sparkline(values: Sequence[float], *, width: int = 20) -> str:
    """Draw `values` (oldest first) in at most `width` characters; see the module docstring."""
    if width < 1:
        raise ValueError(f"width must be at least 1, not {width}")
    count = len(values)
    if count > width:
        # Bucket i holds values[i*count//width : (i+1)*count//width]: every value lands in exactly
        # one bucket and bucket sizes differ by at most one.
        values = [
            _bucket_max(values[i * count // width : (i + 1) * count // width]) for i in range(width)
        ]
    finite = [v for v in values if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 0.0)
    top = len(BARS) - 1

    def bar(value: float) -> str:
        if math.isnan(value):
            return " "
        if value == math.inf:
            return BARS[-1]
        if value == -math.inf or high == low:
            return BARS[0]
        return BARS[round((value - low) / (high - low) * top)]

    return "".join(bar(v) for v in values)
