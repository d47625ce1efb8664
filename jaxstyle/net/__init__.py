"""Real-time style transfer: a feed-forward network (Johnson et al. 2016) trained with jaxstyle's objective.

``train`` a network once on a painting and a folder of photos; ``load`` it; ``apply`` it to any photo
in one forward pass. See :mod:`jaxstyle.net.transformer` (the network), :mod:`jaxstyle.net.training`
and :mod:`jaxstyle.net.data` (training), :mod:`jaxstyle.net.inference` and :mod:`jaxstyle.net.bands`
(any size), :mod:`jaxstyle.net.store` and :mod:`jaxstyle.net.checkpoint` (files).
"""

from .inference import apply
from .store import Network, load, save
from .training import TrainConfig, TrainProgress, Variant, train, train_many

__all__ = ["apply", "load", "save", "train", "train_many", "Network", "TrainConfig", "TrainProgress", "Variant"]
