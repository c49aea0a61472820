"""anyorder: any-order autoregressive models trained and queried the MAC way."""

from . import lattice
from .heads import CategoricalHead, Head, MixtureOfGaussiansHead
from .model import AnyOrderModel, bits_per_dim

__all__ = ["AnyOrderImputer", "AnyOrderModel", "CategoricalHead", "Head", "MixtureOfGaussiansHead", "bits_per_dim",
           "lattice"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """`AnyOrderImputer` on first use: importing anyorder never imports scikit-learn or pandas."""
    if name != "AnyOrderImputer":
        raise AttributeError(f"module 'anyorder' has no attribute {name!r}")
    try:
        from .imputer import AnyOrderImputer
    except ImportError as err:
        raise ImportError(f"AnyOrderImputer needs scikit-learn ({err}); install it with "
                          "pip install 'anyorder[sklearn]'") from err
    return AnyOrderImputer
