"""VGG-19: the network as pure functions, its weights (bundled, from the hub, converted) and normalisation."""
