"""r1omni_edge: R1-Omni (explainable audio-visual emotion recognition) from research code to the edge."""

__version__ = "0.1.0"
