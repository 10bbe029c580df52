"""`prosocial data …`: statistics, conversion and validation of ProsocialDialog files."""

import typer

app = typer.Typer(help="ProsocialDialog data: statistics, conversion, validation.", no_args_is_help=True)
