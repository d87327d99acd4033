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
    assert Settings(fetch_allow_hosts=" Img.AliCDN.com,,example.com ").fetch_hosts == {
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


def test_only_loopback_names_are_served_by_default(tmp_path: Path) -> None:
    assert set(Settings(data_dir=tmp_path).served_hosts) == {"127.0.0.1", "[::1]", "localhost"}


def test_the_public_url_host_and_listed_hosts_are_served_too(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, public_url="https://Search.Example.com:8443/shop", allowed_hosts=" *.cdn.test, ::2 ,"
    )
    assert set(settings.served_hosts) == {
        "127.0.0.1",
        "[::1]",
        "localhost",
        "search.example.com",
        "*.cdn.test",
        "[::2]",
    }
    assert "*" in Settings(data_dir=tmp_path, allowed_hosts="*").served_hosts  # any host, only when asked


@pytest.mark.parametrize("value", ["shop.*.com", "*example.com", "a b", "http://shop.test"])
def test_host_patterns_the_host_check_cannot_take_are_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="TONGKUAN_ALLOWED_HOSTS|allowed_hosts"):
        Settings(data_dir=tmp_path, allowed_hosts=value)


def test_forwarded_headers_are_trusted_from_loopback_only_unless_told(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).forwarded_allow_ips == "127.0.0.1"
    assert Settings(data_dir=tmp_path, forwarded_allow_ips="none").proxy_addresses is None
    assert Settings(data_dir=tmp_path, forwarded_allow_ips="10.0.0.2, 10.1.0.0/16").proxy_addresses == (
        "10.0.0.2,10.1.0.0/16"
    )
    with pytest.raises(ConfigError, match="forwarded_allow_ips"):
        Settings(data_dir=tmp_path, forwarded_allow_ips="proxy.internal")


def test_api_docs_are_off_and_failed_logins_limited_by_default(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.api_docs is False
    assert settings.auth_failure_limit == 10 and settings.auth_failure_window == 60


@pytest.mark.parametrize("url", ["HTTP://milvus.internal:19530", "Milvus://milvus.internal:19530"])
def test_url_schemes_of_settings_are_read_in_any_case(tmp_path: Path, url: str) -> None:
    scheme, rest = url.split("://")
    assert Settings(data_dir=tmp_path, vectors_url=url).vectors_url == f"{scheme.lower()}://{rest}"
    assert Settings(data_dir=tmp_path, catalog_url="PostgreSQL://u@db/shop").catalog_url == "postgresql://u@db/shop"
