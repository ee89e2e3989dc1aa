"""Pseudo-mask generators; see ``registry`` for the names."""
