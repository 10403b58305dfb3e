"""How a batch reaches the server: the `Transport` seam (`base`), one file per implementation."""
