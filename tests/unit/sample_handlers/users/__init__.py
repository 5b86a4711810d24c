"""A sub-package: scanning includes it."""
