"""The normalised VGG of Gatys et al. (2015, section 2): "We normalized the network by scaling the
weights such that the mean activation of each convolutional filter over images and positions is
equal to one. Such re-scaling can be done for the VGG network without changing its output, because
it contains only rectifying linear activation functions and no normalization or pooling over
feature maps."

The paper averages over ImageNet; a run here calibrates on the two bundled example images, where a
few filters barely fire. Dividing by such a mean would amplify that filter enormously on any other
image, and its Gram entries would outweigh the rest of the style loss. Departure: each filter's
mean is floored at ``floor`` (default 0.1) times the average filter mean of its layer; filters
above the floor (all but a handful) get mean one exactly.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .vgg import CONV_LAYERS, features
from .weights import VGGWeights


def filter_means(weights: VGGWeights, images: Sequence[np.ndarray], pooling: str = "max") -> dict[str, np.ndarray]:
    """Mean ReLU activation of every filter over the images and all positions: ``{relu_l: (C_l,)}``."""
    sums, count = None, 0
    for image in images:
        sizes, part = _filter_sums(weights.params, weights.preprocessing(jnp.asarray(image)), pooling)
        h_w = {k: int(np.prod(size)) for k, size in sizes.items()}
        part = {k: np.asarray(v, np.float64) for k, v in part.items()}
        if sums is None:
            sums, count = part, h_w
        else:
            sums = {k: sums[k] + part[k] for k in sums}
            count = {k: count[k] + h_w[k] for k in count}
    return {k: sums[k] / count[k] for k in sums}


RELUS = tuple(name.replace("conv", "relu") for name in CONV_LAYERS)


@functools.partial(jax.jit, static_argnames=("pooling",))
def _filter_sums(params, image, pooling: str):
    # One program per image size: op by op, the 50-odd ops of VGG were programs of their own, each
    # too quick to compile for JAX's persistent cache, in every process that runs the paper's preset
    # (problem.network's first call: 4.9 s op by op, 3.4 s as one program).
    feats = features(params, image, RELUS, pooling=pooling)
    return ({k: v.shape[:2] for k, v in feats.items()}, {k: jnp.sum(v, axis=(0, 1)) for k, v in feats.items()})


FLOOR = 0.1


def normalize_vgg(weights: VGGWeights, images: Sequence[np.ndarray], pooling: str = "max",
                  floor: float = FLOOR) -> VGGWeights:
    """Rescale each conv layer so every filter's mean activation over ``images`` is one.

    Layer l's output channel j is divided by its mean m_l[j] (kernel and bias), and layer l+1's
    input channel j is multiplied by m_l[j], so every later layer sees the same pre-activations:
    the network's function changes only by a per-channel scale at each layer. The divisor is
    ``max(m_l[j], floor * mean(m_l))`` (see the module docstring); ``floor=0`` divides by the raw
    means, leaving filters that never fire (mean 0) at their scale.
    """
    means = filter_means(weights, images, pooling)
    params, previous = {}, np.ones(3)
    for name in CONV_LAYERS:
        m = means[name.replace("conv", "relu")]
        m = np.maximum(m, floor * m.mean()) if floor > 0 else np.where(m > 0, m, 1.0)
        kernel = np.asarray(weights.params[name]["kernel"], np.float64)
        kernel = kernel * previous.reshape(1, 1, -1, 1) / m.reshape(1, 1, 1, -1)
        bias = np.asarray(weights.params[name]["bias"], np.float64) / m
        params[name] = {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}
        previous = m
    return VGGWeights(params=params, preprocessing=weights.preprocessing, sha256=weights.sha256 + "+normalized")
