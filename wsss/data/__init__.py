"""Datasets: the Oxford-IIIT Pet index, robust decoding, and the synthetic pets generator."""
