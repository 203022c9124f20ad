"""The package version, in a module of its own so that any part of the
package (and setup.cfg, statically) can read it without importing the rest."""

__version__ = "0.2.0"
