"""Convert a microphone (or a file, block by block, as if it came from one) live.

Devices: --input-device/--output-device (names or numbers from --list-devices). Files: --input-file IN.wav
--output-file OUT.wav stream the file through the same code, paced in real time (--as-fast-as-possible skips the
pacing); OUT.wav is what an output device would play: the input's length, delayed by the reported latency.
The conversion options are those of svc-pl infer (the slicer, clip and diffusion settings do not apply to a stream).
"""

from svc_pl.infer.live import add_arguments, run  # noqa: F401  (the command's two functions)
