"""Where W&B credentials come from: the environment, a netrc file (NETRC or ~/.netrc), or nowhere (offline);
the key itself is never in what is reported."""

from __future__ import annotations

import pytest

from imlsweep.errors import UserError
from imlsweep.sweep.credentials import credentials_source, describe_tracking, wandb_mode
from imlsweep.sweep.spec import Tracking

KEY = "f" * 40


def netrc_file(tmp_path, machine="api.wandb.ai"):
    path = tmp_path / "netrc"
    path.write_text(f"machine {machine}\n  login user\n  password {KEY}\n")
    path.chmod(0o600)
    return path


def test_a_netrc_entry_for_the_w_and_b_host_is_found_and_named_not_quoted(tmp_path):
    path = netrc_file(tmp_path)
    source = credentials_source({"NETRC": str(path)})
    assert source == f"netrc file {path} (machine api.wandb.ai)" and KEY not in source
    assert wandb_mode(Tracking(), {"NETRC": str(path)}) == "online"


def test_the_netrc_entry_follows_wandb_base_url(tmp_path):
    path = netrc_file(tmp_path, machine="wandb.example.org")
    assert credentials_source({"NETRC": str(path)}) is None
    environ = {"NETRC": str(path), "WANDB_BASE_URL": "https://wandb.example.org"}
    assert credentials_source(environ) == f"netrc file {path} (machine wandb.example.org)"


def test_home_netrc_is_read_without_netrc_set(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / ".netrc"
    netrc_file(tmp_path).rename(path)
    assert credentials_source({}) == f"netrc file {path} (machine api.wandb.ai)"


def test_no_credentials_means_offline(tmp_path):
    for environ in ({"NETRC": "/dev/null"}, {"NETRC": str(tmp_path / "missing")},
                    {"NETRC": str(netrc_file(tmp_path, machine="github.com"))}):
        assert credentials_source(environ) is None
        assert wandb_mode(Tracking(), environ) == "offline"
    assert wandb_mode(Tracking(mode="online"), {"NETRC": "/dev/null"}) == "online"


def test_the_environment_variable_comes_first():
    assert credentials_source({"WANDB_API_KEY": KEY}) == "the WANDB_API_KEY environment variable"


def test_a_malformed_netrc_names_the_file_but_quotes_nothing_from_it(tmp_path):
    path = tmp_path / "netrc"
    path.write_text(f"machine api.wandb.ai login user password {KEY} bogus{KEY}\n")
    with pytest.raises(UserError, match="not a valid netrc file") as error:
        credentials_source({"NETRC": str(path)})
    assert str(path) in str(error.value) and KEY not in str(error.value)


def test_the_sweeps_line_on_w_and_b(tmp_path):
    path = netrc_file(tmp_path)
    line = describe_tracking(Tracking(), {"NETRC": str(path)})
    assert line == f"W&B: runs online (tracking.mode: auto), credentials from netrc file {path} (machine api.wandb.ai)"
    assert describe_tracking(Tracking(mode="offline"), {"NETRC": "/dev/null"}) == (
        "W&B: runs offline (tracking.mode), no credentials (WANDB_API_KEY or a netrc entry)")
    assert describe_tracking(Tracking(wandb=False), {}) == "W&B: off (tracking.wandb: false)"
