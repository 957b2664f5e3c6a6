"""Subcommands of the ``diffconv`` CLI, one module each (``add_arguments``, ``run``)."""
