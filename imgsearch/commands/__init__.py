"""One module per command group; imported only when its command runs."""
