"""python -m shared.cli: the router's command line (`--help` lists the commands)."""

from .operation_commands import cmd_backup_check, cmd_examples
from .parser import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "cmd_backup_check", "cmd_examples", "main"]
