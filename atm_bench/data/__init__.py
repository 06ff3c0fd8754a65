"""Datasets: LIBERO-layout HDF5 episodes (read/write), demo generation, matched splits."""
