"""A stateful polyphase resampler for streams: pieces in, pieces out, the same samples as resampling the whole
signal at once with :func:`scipy.signal.resample_poly` (zero-phase, zeros before the start).

Output sample ``o`` sits at input position ``o * sr_in / sr_out`` (no delay is added); it is emitted as soon as the
filter's support around that position has arrived, so a stream waits :attr:`StreamResampler.lookahead` input
samples for it. The pieces are therefore click-free by construction: there are no block edges in the output.
"""

from __future__ import annotations

from math import gcd

import numpy as np


class StreamResampler:
    """Resample a stream from ``sr_in`` to ``sr_out``.

    Args:
        sr_in, sr_out: rates in Hz (equal rates pass samples through).
    """

    def __init__(self, sr_in: int, sr_out: int):
        g = gcd(int(sr_in), int(sr_out))
        self.up, self.down = int(sr_out) // g, int(sr_in) // g
        # resample_poly's filter: 2 * half_len + 1 taps at the up-sampled rate, half_len = 10 * max(up, down)
        self.lookahead = 0 if self.up == self.down else -(-10 * max(self.up, self.down) // self.up) + 1
        self._buf = np.zeros(0, np.float32)
        self._start = 0  # input index of _buf[0] (a multiple of ``down``)
        self.received = 0  # input samples pushed
        self.emitted = 0  # output samples returned

    def available(self, received: int) -> int:
        """Output samples computable once ``received`` input samples have arrived."""
        if self.up == self.down:
            return received
        # output o needs input up to o * down / up + lookahead
        last = received - 1 - self.lookahead
        return 0 if last < 0 else last * self.up // self.down + 1

    def push(self, x: np.ndarray) -> np.ndarray:
        """Append input samples (T,) and return every output sample that is now final."""
        x = np.asarray(x, np.float32)
        self.received += len(x)
        if self.up == self.down:
            self.emitted += len(x)
            return x
        from scipy.signal import resample_poly

        self._buf = np.concatenate([self._buf, x])
        n_out = self.available(self.received)
        if n_out <= self.emitted:
            return np.zeros(0, np.float32)
        y = resample_poly(self._buf, self.up, self.down).astype(np.float32)
        first = self._start * self.up // self.down  # output index of y[0]
        out = y[self.emitted - first:n_out - first]
        self.emitted = n_out
        # keep the input the next outputs' filters reach back to, from a multiple of ``down``
        keep_from = max(0, (self.emitted * self.down // self.up - self.lookahead - 1) // self.down * self.down)
        if keep_from > self._start:
            self._buf = self._buf[keep_from - self._start:]
            self._start = keep_from
        return out
