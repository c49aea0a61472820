"""anyorder: any-order autoregressive models trained and queried the MAC way."""

from . import lattice
from .heads import CategoricalHead, Head, MixtureOfGaussiansHead
from .model import AnyOrderModel, bits_per_dim

__all__ = ["AnyOrderModel", "CategoricalHead", "Head", "MixtureOfGaussiansHead", "bits_per_dim", "lattice"]
__version__ = "0.1.0"
