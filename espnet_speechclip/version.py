"""The package's version, in a module of its own: modules that record it (results, archives, Hub
downloads) import it without importing the package root and the registrations it installs."""

__version__ = "0.1.0"
