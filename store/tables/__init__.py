"""Table definitions, one module per owner; ``store.schema`` gathers them."""
