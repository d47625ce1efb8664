"""jaxstyle: neural style transfer (Gatys, Ecker & Bethge 2015) in JAX."""

from .config import StyleConfig
from .errors import JaxstyleError
from .image import load_image, save_image
from .objective import image_features as features
from .transfer import Progress, Result, stylize
from .vgg import LAYERS
from .weights import VGGWeights, load_bundled

__all__ = [
    "LAYERS",
    "JaxstyleError",
    "Progress",
    "Result",
    "StyleConfig",
    "VGGWeights",
    "features",
    "load_bundled",
    "load_image",
    "save_image",
    "stylize",
]
__version__ = "0.1.0"
