"""The `isoprobe` command line: thin typer commands that parse options and call the library."""
