"""The ``wsss`` command line: one module per verb group (see ``main``)."""
