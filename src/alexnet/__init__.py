"""alexnet: the system of Krizhevsky, Sutskever & Hinton (NIPS 2012) on PyTorch."""

__version__ = "0.1.0"
