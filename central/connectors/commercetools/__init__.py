"""The commercetools target: orders (from carts or order imports), payments, returns and
inventory, over its HTTP API with a client-credentials token."""
