import subprocess
import sys

from imlsweep.cli import COMMAND_GROUPS, build_parser, main


def test_help_lists_every_group():
    text = build_parser().format_help()
    for name, _, _ in COMMAND_GROUPS:
        assert name in text


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "imlsweep.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "corpus" in result.stdout


def test_no_group_prints_help(capsys):
    assert main([]) == 0
    assert "usage: imlsweep" in capsys.readouterr().out
