"""Models: breed classifiers (the source of CAMs) and segmentation networks."""
