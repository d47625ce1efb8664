"""Pixel optimisers: one optax step (guarded L-BFGS or Adam), the L-BFGS transformation, preconditioning."""
