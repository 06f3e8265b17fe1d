"""Block Kit views (modals) the listeners open, and the reading of what people submit in them."""
