"""Networks by name: the architecture registry, `create_model`, safe weight loading."""
