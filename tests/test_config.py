"""Settings: apps parsing, environment and data-directory TOML sources, and the warning for a
`TONGKUAN_` variable that names no setting."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

from tongkuan.config import FIELDS, GROUP_OF, GROUPS, NOT_SETTINGS, Settings, parse_apps, parse_rate_limits
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
    assert settings.access.app_secrets == {"file": "secret"}
    assert settings.models.threads == 3


def test_allow_list_hosts_are_normalised() -> None:
    assert Settings(fetch_allow_hosts=" Img.AliCDN.com,,example.com ").fetch.hosts == {
        "img.alicdn.com",
        "example.com",
    }


def test_the_readme_documents_every_setting_under_its_group() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("<!-- settings -->") : readme.index("<!-- /settings -->")]
    groups = [line for line in table.splitlines() if line.startswith("| **")]
    assert [line.split("**")[1] for line in groups] == ["data", *GROUPS]
    missing = [name for name in FIELDS if f"`TONGKUAN_{name.upper()}`" not in table]
    assert not missing
    for name in FIELDS:  # each row sits under its group's heading
        row = table.index(f"`TONGKUAN_{name.upper()}`")
        heading = table.rindex("| **", 0, row)
        assert table[heading:].split("**")[1] == GROUP_OF.get(name, "data"), name


def test_every_setting_keeps_its_flat_name_in_the_environment_and_the_toml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tongkuan.toml").write_text('fetch_max_bytes = 1000\nindex_kind = "flat"\n[search]\nneighbours = 7\n')
    monkeypatch.setenv("TONGKUAN_QUERY_CACHE", "5")
    monkeypatch.setenv("tongkuan_backend_timeout_s", "2.5")  # matched ignoring case
    monkeypatch.setenv("TONGKUAN_CATEGORY_PRIOR_WEIGHT", "")  # empty: unset
    settings = Settings(data_dir=tmp_path, allow_loopback_fetch=True)
    assert (settings.fetch.max_bytes, settings.fetch.allow_loopback) == (1000, True)
    assert (settings.search.cached_pictures, settings.search.neighbours, settings.search.prior_weight) == (5, 7, 0.35)
    assert settings.index.kind.value == "flat" and settings.backends.timeout_s == 2.5


def test_the_flat_names_are_unique_and_cover_every_field_of_every_group() -> None:
    assert len(FIELDS) == 2 + sum(len(group.model_fields) for group in GROUPS.values())
    assert set(GROUP_OF) | {"data_dir", "image_dir"} == set(FIELDS)


def test_settings_are_changed_by_flat_name_without_touching_the_rest(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, threads=3)
    changed = settings.changed(model="efficientnet-lite0", catalog_url="postgresql://db/x")
    assert changed.models.model == "efficientnet-lite0" and changed.models.threads == 3
    assert changed.backends.catalog_url == "postgresql://db/x" and settings.backends.catalog_url is None
    with pytest.raises(ValueError, match="no setting named 'nonsense'"):
        settings.changed(nonsense=1)


def test_the_search_settings_are_the_searchers_options_field_for_field() -> None:
    from tongkuan.search.query import SearchOptions

    assert Settings().search.options() == SearchOptions()
    assert Settings(images_per_product=5).search.options().images_per_product == 5


def test_rate_limits_are_parsed_and_bad_ones_refused() -> None:
    assert Settings(rate_limits="a:2.5, b:0").limits.app_rate_limits == {"a": 2.5, "b": 0.0}
    for bad in ("a", "a:fast", "a:-1", ":3"):
        with pytest.raises(ConfigError, match="appKey:qps"):
            parse_rate_limits(bad)


def test_only_loopback_names_are_served_by_default(tmp_path: Path) -> None:
    assert set(Settings(data_dir=tmp_path).http.served_hosts) == {"127.0.0.1", "[::1]", "localhost"}


def test_the_public_url_host_and_listed_hosts_are_served_too(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, public_url="https://Search.Example.com:8443/shop", allowed_hosts=" *.cdn.test, ::2 ,"
    )
    assert set(settings.http.served_hosts) == {
        "127.0.0.1",
        "[::1]",
        "localhost",
        "search.example.com",
        "*.cdn.test",
        "[::2]",
    }
    assert "*" in Settings(data_dir=tmp_path, allowed_hosts="*").http.served_hosts  # any host, only when asked


@pytest.mark.parametrize("value", ["shop.*.com", "*example.com", "a b", "http://shop.test"])
def test_host_patterns_the_host_check_cannot_take_are_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="TONGKUAN_ALLOWED_HOSTS|allowed_hosts"):
        Settings(data_dir=tmp_path, allowed_hosts=value)


def test_forwarded_headers_are_trusted_from_no_one_unless_told(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).http.forwarded_allow_ips == "none"
    assert Settings(data_dir=tmp_path).http.proxy_addresses is None
    assert Settings(data_dir=tmp_path, forwarded_allow_ips="NONE").http.proxy_addresses is None
    assert Settings(data_dir=tmp_path, forwarded_allow_ips="127.0.0.1").http.proxy_addresses == "127.0.0.1"
    assert Settings(data_dir=tmp_path, forwarded_allow_ips="10.0.0.2, 10.1.0.0/16").http.proxy_addresses == (
        "10.0.0.2,10.1.0.0/16"
    )
    with pytest.raises(ConfigError, match="forwarded_allow_ips"):
        Settings(data_dir=tmp_path, forwarded_allow_ips="proxy.internal")


def test_api_docs_are_off_and_failed_logins_limited_by_default(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.http.api_docs is False
    assert settings.access.auth_failure_limit == 10 and settings.access.auth_failure_window == 60


@pytest.mark.parametrize("url", ["HTTP://milvus.internal:19530", "Milvus://milvus.internal:19530"])
def test_url_schemes_of_settings_are_read_in_any_case(tmp_path: Path, url: str) -> None:
    scheme, rest = url.split("://")
    assert Settings(data_dir=tmp_path, vectors_url=url).backends.vectors_url == f"{scheme.lower()}://{rest}"
    assert (
        Settings(data_dir=tmp_path, catalog_url="PostgreSQL://u@db/shop").backends.catalog_url
        == "postgresql://u@db/shop"
    )


@pytest.mark.parametrize(
    "value", ["search.example.com", "ftp://search.example.com", "https://", "http://search.example.com:port"]
)
def test_a_public_url_must_be_an_http_url_with_a_host(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"public_url=.* is not valid: use an http:// or https:// URL"):
        Settings(data_dir=tmp_path, public_url=value)
    assert Settings(data_dir=tmp_path, public_url="HTTPS://search.example.com").http.public_url == (
        "https://search.example.com"
    )


@pytest.mark.parametrize("value", ["img.example.com;cdn.example.com", "https://img.example.com", "*.example.com"])
def test_picture_hosts_must_be_host_names(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="fetch_allow_hosts=.* is not valid: use host names"):
        Settings(data_dir=tmp_path, fetch_allow_hosts=value)
    assert Settings(data_dir=tmp_path, fetch_allow_hosts="127.0.0.1, ::1").fetch.hosts == {"127.0.0.1", "::1"}


def test_a_model_is_a_shipped_or_tuned_name_or_an_existing_model_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "model.json").write_text("{}")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    described = Settings(data_dir=tmp_path, model="mine/model.json").models.model
    assert described == str(tmp_path / "mine" / "model.json")  # absolute, as read
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert Settings(data_dir=tmp_path, model=described).models.model == described
    assert Settings(data_dir=tmp_path, model="efficientnet-lite0").models.model == "efficientnet-lite0"
    assert Settings(data_dir=tmp_path, model="tuned-0123456789ab").models.model == "tuned-0123456789ab"
    for bad in ("efficientnet-b7", "mine/model.json", str(tmp_path / "mine"), str(tmp_path / "mine" / "other.json")):
        with pytest.raises(ConfigError, match=r"model=.* is not valid: use efficientnet-lite0, efficientnet-lite2, "):
            Settings(data_dir=tmp_path, model=bad)


def test_folders_are_refused_where_none_can_be_made(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert Settings(data_dir=tmp_path / "new" / "data").data_dir == tmp_path / "new" / "data"
    with pytest.raises(ConfigError, match=r"data_dir=.* is not valid: use a folder that exists or can be created"):
        Settings(data_dir=tmp_path / "file" / "data")
    with pytest.raises(ConfigError, match=r"image_dir=.* is not valid: use a folder that exists or can be created"):
        Settings(data_dir=tmp_path, image_dir=tmp_path / "file")
    assert not (tmp_path / "new").exists()  # a check, not a mkdir
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    with pytest.raises(ConfigError, match="data_dir"):
        Settings(data_dir=tmp_path / "dangling")  # mkdir would fail: the link is there


@pytest.fixture
def unreported(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TONGKUAN_ variable from the shell, and none reported yet in this process."""
    from tongkuan.config import settings

    for name in list(os.environ):
        if name.upper().startswith("TONGKUAN_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(settings, "_reported", set())


@pytest.mark.usefixtures("unreported")
def test_an_unknown_variable_is_warned_about_once_naming_the_closest_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TONGKUAN_THRADS", "3")
    monkeypatch.setenv("TONGKUAN_INDEX", "flat")  # the setting's name before it was TONGKUAN_INDEX_KIND
    with caplog.at_level(logging.WARNING, logger="tongkuan.config"):
        settings = Settings(data_dir=tmp_path)
        Settings(data_dir=tmp_path)
    assert settings.models.threads == 2  # ignored
    assert sorted(r.getMessage() for r in caplog.records) == [
        "TONGKUAN_INDEX is not a tongkuan setting and is ignored (did you mean TONGKUAN_INDEX_KIND?)",
        "TONGKUAN_THRADS is not a tongkuan setting and is ignored (did you mean TONGKUAN_THREADS?)",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.usefixtures("unreported")
def test_a_variable_like_no_setting_points_to_the_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TONGKUAN_XYZZY", "1")
    with caplog.at_level(logging.WARNING, logger="tongkuan.config"):
        Settings(data_dir=tmp_path)
    assert [r.getMessage() for r in caplog.records] == [
        "TONGKUAN_XYZZY is not a tongkuan setting and is ignored (the README's Configuration lists the settings)"
    ]


@pytest.mark.usefixtures("unreported")
def test_settings_and_the_variables_of_tests_and_benchmarks_are_not_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for variable in NOT_SETTINGS:
        monkeypatch.setenv(variable, "1")
    monkeypatch.setenv("tongkuan_threads", "3")  # a setting, in any case
    with caplog.at_level(logging.WARNING, logger="tongkuan.config"):
        assert Settings(data_dir=tmp_path).models.threads == 3
    assert caplog.records == []


def test_every_tongkuan_variable_the_code_reads_is_a_setting_or_listed_as_none() -> None:
    repo = Path(__file__).resolve().parent.parent
    reads = re.compile(r"""(?:environ\.get\(|getenv\(|environ\[)\s*["'](TONGKUAN_[A-Z0-9_]+)["']""")
    code = [*(repo / "src").rglob("*.py"), *(repo / "tests").rglob("*.py"), *(repo / "bench").rglob("*.py")]
    read = {name for path in code for name in reads.findall(path.read_text(encoding="utf-8"))}
    assert {"TONGKUAN_TEST_DATA", "TONGKUAN_MILVUS_ISOLATE"} <= read  # the pattern finds them
    assert read - {f"TONGKUAN_{name.upper()}" for name in FIELDS} - NOT_SETTINGS == set()
