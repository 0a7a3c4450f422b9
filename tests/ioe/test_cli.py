"""The `ioe` command: every subcommand listed; unavailable ones fail loudly, never fake success."""

from __future__ import annotations

import subprocess
import sys

from ioe.cli import COMMANDS, NOT_AVAILABLE, main
from ioe.settings import ROOT

REQUIRED = {"stack", "registry", "worker", "web", "mqtt-bridge", "modbus-edge", "datadis",
            "simulate", "settle", "coefficients", "demo"}


def test_help_lists_every_command_with_a_description():
    result = subprocess.run([sys.executable, "-m", "ioe.cli", "--help"], capture_output=True,
                            text=True, check=True)
    for name in REQUIRED:
        line = next(line for line in result.stdout.splitlines()
                    if line.strip().startswith(name + " "))
        assert len(line.split(None, 1)[1]) > 10


def test_commands_table_covers_the_design():
    assert REQUIRED <= {c.name for c in COMMANDS}


def test_registry_validate_on_the_example(capsys):
    assert main(["registry", "validate", str(ROOT / "infra/examples/community.yaml")]) == 0
    assert "30 members" in capsys.readouterr().out


def test_registry_validate_reports_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("communities:\n  - id: x\n    members: 3\n")
    assert main(["registry", "validate", str(bad)]) == 2
    assert "bad.yaml:3: community x: 'members' must be a list" in capsys.readouterr().err


def test_missing_module_is_not_a_success(monkeypatch, capsys):
    from ioe import cli

    fake = cli.Command("ghost", "a command whose module is missing", "ioe.no_such_module")
    monkeypatch.setitem(cli.BY_NAME, "ghost", fake)
    assert cli.main(["ghost"]) == NOT_AVAILABLE
    assert "not yet available" in capsys.readouterr().err
