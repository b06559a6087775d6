"""The package version, in a module of its own: modules that record it (export metadata, the
HTTP User-Agent, ``--version``) import it from here, not from the package, so that importing
them never imports the whole package first. It is the newest release in docs/CHANGELOG.md
(tests/test_version.py checks), and pyproject.toml reads it from here."""

__version__ = "0.5.0"
