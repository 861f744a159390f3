import subprocess
import sys
from pathlib import Path

import pytest

import imlsweep
from imlsweep.bench.cli import BENCHMARKS
from imlsweep.cli import COMMAND_GROUPS, build_parser, main

PACKAGE = Path(imlsweep.__file__).parent


def test_every_stage_command_module_is_wired_in():
    """Each `<stage>/cli.py` on disk is a command group, and each bench module a benchmark."""
    on_disk = {f"imlsweep.{path.parent.name}.cli" for path in PACKAGE.glob("*/cli.py")}
    assert {module for _, module, _ in COMMAND_GROUPS} == on_disk
    benches = {path.stem for path in (PACKAGE / "bench").glob("*.py")} - {"__init__", "cli"}
    assert {name for name, _ in BENCHMARKS} == benches


@pytest.mark.parametrize("group", [name for name, _, _ in COMMAND_GROUPS])
def test_each_group_parses_its_help(group, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([group, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: imlsweep {group}" in capsys.readouterr().out


@pytest.mark.slow  # a subprocess
def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "imlsweep.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "corpus" in result.stdout


def test_no_group_prints_help(capsys):
    assert main([]) == 0
    assert "usage: imlsweep" in capsys.readouterr().out
