"""Training callbacks: Prechelt early stopping and the diagnostics that run inside `fit`."""
