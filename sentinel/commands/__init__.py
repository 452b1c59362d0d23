"""The bodies of the ``sentinel`` commands, one module per area; ``sentinel.cli`` parses
the arguments and dispatches."""
