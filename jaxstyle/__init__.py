"""jaxstyle: neural style transfer (Gatys, Ecker & Bethge 2015) in JAX.

The public names are imported on first use (PEP 562), so ``import jaxstyle`` is instant and the
command line can install its signal handlers before JAX starts (Ctrl-C during start-up is clean).
"""

import importlib
import importlib.util

_PUBLIC = {
    "LAYERS": "model.vgg",
    "Job": "run.problem",
    "JaxstyleError": "errors",
    "Progress": "run.transfer",
    "Result": "run.transfer",
    "StyleConfig": "config",
    "VGGWeights": "model.weights",
    "features": ("evaluate.objective", "image_features"),
    "load_bundled": "model.weights",
    "load_image": "io.image",
    "run_sweep": "run.sweep",
    "save_image": "io.image",
    "stylize": "run.transfer",
    "stylize_batch": "run.batch",
    "stylize_video": "run.video",
}

__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _PUBLIC:
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:  # jaxstyle.notebook, jaxstyle.run, …
            return importlib.import_module(f".{name}", __name__)
        raise AttributeError(f"module 'jaxstyle' has no attribute {name!r}")
    module, attribute = _PUBLIC[name] if isinstance(_PUBLIC[name], tuple) else (_PUBLIC[name], name)
    value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
