"""Settings: apps parsing, environment and data-directory TOML sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from tongkuan.config import Settings, parse_apps, parse_rate_limits
from tongkuan.errors import ConfigError


def test_apps_are_parsed_from_key_secret_pairs() -> None:
    assert parse_apps("k1:s1, k2:s:with:colons ,") == {"k1": "s1", "k2": "s:with:colons"}


@pytest.mark.parametrize("value", ["k1", "k1:", ":s1", "k1:s1,broken"])
def test_malformed_apps_are_refused_naming_the_entry(value: str) -> None:
    with pytest.raises(ConfigError, match="appKey:appSecret"):
        parse_apps(value)


def test_environment_wins_over_the_data_directory_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tongkuan.toml").write_text('apps = "file:secret"\nthreads = 1\n')
    monkeypatch.setenv("TONGKUAN_THREADS", "3")
    settings = Settings(data_dir=tmp_path)
    assert settings.app_secrets == {"file": "secret"}
    assert settings.threads == 3


def test_allow_list_hosts_are_normalised() -> None:
    assert Settings(fetch_allow_hosts=" Img.AliCDN.com,,example.com ").allowed_hosts == {
        "img.alicdn.com",
        "example.com",
    }


def test_the_readme_documents_every_setting() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    missing = [name for name in Settings.model_fields if f"TONGKUAN_{name.upper()}" not in readme]
    assert not missing


def test_rate_limits_are_parsed_and_bad_ones_refused() -> None:
    assert Settings(rate_limits="a:2.5, b:0").app_rate_limits == {"a": 2.5, "b": 0.0}
    for bad in ("a", "a:fast", "a:-1", ":3"):
        with pytest.raises(ConfigError, match="appKey:qps"):
            parse_rate_limits(bad)
