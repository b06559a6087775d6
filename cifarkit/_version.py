"""The package version, in a module of its own: modules that record it (export metadata, the
HTTP User-Agent, ``--version``) import it from here, not from the package, so that importing
them never imports the whole package first."""

__version__ = "0.1.0"
