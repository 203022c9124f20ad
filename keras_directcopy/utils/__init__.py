"""Utilities every layer of the package may use: atomic file writes and
checksums (`files`), and the provenance of a result (`provenance`)."""
