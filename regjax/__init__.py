"""regjax: regularization in deep learning, measured with JAX, Flax Linen and optax."""
