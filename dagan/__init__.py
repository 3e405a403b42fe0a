"""DaGAN: depth-aware talking-head video generation (Hong et al., CVPR 2022)."""

__version__ = "0.1.0"
