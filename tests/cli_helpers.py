"""Running the CLI in tests: one invocation helper and the checks every command shares."""

from __future__ import annotations

from typer.testing import CliRunner

from isoprobe.cli.app import app


def invoke(*args, env: dict | None = None):
    # A wide terminal, so rich does not wrap long temporary paths in the output.
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400", **(env or {})})


def assert_ok(result) -> None:
    assert result.exit_code == 0, (result.output, result.exception)


def assert_user_error(result, *fragments: str) -> str:
    """Exit code 2, exactly one `error:` message on stderr holding the fragments, no traceback."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    message = result.stderr
    assert message.startswith("error: ") and message.count("error: ") == 1, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message
