"""The checks, one module per group, each a tuple `CHECKS` in the order they run; the
catalogue (`..catalogue`) puts the groups in order."""
