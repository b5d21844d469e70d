"""Sub-commands of the `keras-optnotes` console script.

Each module here defines `NAME` (the sub-command), `HELP` (one line),
`add_arguments(parser)` and `run(args) -> int`. `keras_optnotes.cli` finds them by
listing this package, so adding a command is adding a module.
"""
