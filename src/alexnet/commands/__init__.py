"""Subcommands of the ``alexnet`` command line; each module only parses and calls the library."""
