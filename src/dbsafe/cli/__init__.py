"""The command line: thin commands (one file each, in ``commands/``) that parse arguments,
call one service and hand the result to ``render``. No business logic lives here."""
