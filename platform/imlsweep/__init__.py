"""imlsweep."""
