"""The package's version, in a module of its own: code anywhere in the package can read it
without importing the package's ``__init__`` (which loads the %load_ext hook)."""

__version__ = "0.1.0"
