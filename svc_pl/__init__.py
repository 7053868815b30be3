"""svc_pl: singing voice conversion as a PyTorch Lightning package.

The synthesizer is the so-vits-svc 4.1 generator (content units + F0 + speaker -> VITS prior/flow ->
NSF-HiFiGAN); ``svc_pl.compat`` loads and writes so-vits-svc checkpoints.
"""

__version__ = "0.1.0"
