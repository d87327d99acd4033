"""The command line's answer to bad settings: one line naming the setting, its value and what
it may be, for every setting and every command that reads them, never a traceback; an empty
variable means the default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.conftest import new_data_dir
from tongkuan.cli import main
from tongkuan.config import FIELDS, SECRET_SETTINGS, Settings

ICONIC = "grocery_store/iconic/Kiwi_Iconic.jpg"
FREE = {"data_dir", "image_dir", "milvus_token"}  # any text, or any folder that can be created

# a value each setting refuses, and the one line that says so
BAD = {
    "TONGKUAN_ALLOW_LOOPBACK_FETCH": (
        "maybe",
        "TONGKUAN_ALLOW_LOOPBACK_FETCH='maybe' is not valid: use true or false (empty or unset: the default, false)",
    ),
    "TONGKUAN_THREADS": (
        "many",
        "TONGKUAN_THREADS='many' is not valid: use a whole number, at least 1 (empty or unset: the default, 2)",
    ),
    "TONGKUAN_HNSW_M": (
        "200",
        "TONGKUAN_HNSW_M='200' is not valid: use a whole number, at least 4 and at most 128 "
        "(empty or unset: the default, 32)",
    ),
    "TONGKUAN_CATEGORY_PRIOR_WEIGHT": (
        "1.5",
        "TONGKUAN_CATEGORY_PRIOR_WEIGHT='1.5' is not valid: use a number, at least 0 and at most 1 "
        "(empty or unset: the default, 0.35)",
    ),
    "TONGKUAN_FETCH_READ_TIMEOUT": (
        "0",
        "TONGKUAN_FETCH_READ_TIMEOUT='0' is not valid: use a number, more than 0 (empty or unset: the default, 10)",
    ),
    "TONGKUAN_INDEX_KIND": (
        "ivf",
        "TONGKUAN_INDEX_KIND='ivf' is not valid: use flat, hnsw or hnsw-sq8 (empty or unset: the default, hnsw-sq8)",
    ),
    "TONGKUAN_MILVUS_CONSISTENCY": (
        "Weak",
        "TONGKUAN_MILVUS_CONSISTENCY='Weak' is not valid: use Session, Strong, Bounded or Eventually "
        "(empty or unset: the default, Session)",
    ),
    "TONGKUAN_VECTORS_URL": (
        "ftp://vectors",
        "TONGKUAN_VECTORS_URL='ftp://vectors' is not valid: use a milvus://HOST:PORT URL (empty or unset: the default)",
    ),
    "TONGKUAN_RATE_LIMITS": (
        "app:fast",
        "TONGKUAN_RATE_LIMITS='app:fast' is not valid: use appKey:qps pairs separated by commas, "
        "qps a number, at least 0 (empty or unset: the default)",
    ),
    # secrets are never echoed
    "TONGKUAN_APPS": (
        "app-without-secret",
        "TONGKUAN_APPS (value not shown) is not valid: use appKey:appSecret pairs separated by commas "
        "(empty or unset: the default)",
    ),
    "TONGKUAN_ADMIN_TOKEN": (
        "short",
        "TONGKUAN_ADMIN_TOKEN (value not shown) is not valid: use at least 16 characters (empty or unset: the default)",
    ),
    "TONGKUAN_ALLOWED_HOSTS": (
        "shop.*.com",
        "TONGKUAN_ALLOWED_HOSTS='shop.*.com' is not valid: use host names or *.domain patterns separated by commas, "
        "or * for any host (empty or unset: the default)",
    ),
    "TONGKUAN_FORWARDED_ALLOW_IPS": (
        "proxy.internal",
        "TONGKUAN_FORWARDED_ALLOW_IPS='proxy.internal' is not valid: use IP addresses or networks separated by "
        "commas, * for any, or none (empty or unset: the default, none)",
    ),
    "TONGKUAN_CATALOG_URL": (
        "mysql://user:hunter2@db/shop",
        "TONGKUAN_CATALOG_URL (value not shown) is not valid: use a postgresql:// URL (empty or unset: the default)",
    ),
    "TONGKUAN_MODEL": (
        "efficientnet-b7",
        "TONGKUAN_MODEL='efficientnet-b7' is not valid: use efficientnet-lite0, efficientnet-lite2, "
        "a tuned model's name (tuned-...), the name of a model in the data directory (tongkuan models list) "
        "or the path of an existing model.json (empty or unset: the default)",
    ),
    "TONGKUAN_PUBLIC_URL": (
        "search.example.com",
        "TONGKUAN_PUBLIC_URL='search.example.com' is not valid: use an http:// or https:// URL with a host name "
        "(empty or unset: the default)",
    ),
    "TONGKUAN_FETCH_ALLOW_HOSTS": (
        "img.example.com;cdn.example.com",
        "TONGKUAN_FETCH_ALLOW_HOSTS='img.example.com;cdn.example.com' is not valid: use host names or IP addresses "
        "separated by commas (empty or unset: the default)",
    ),
}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TONGKUAN_ variable from the developer's shell leaks into these runs."""
    for name in list(os.environ):
        if name.upper().startswith("TONGKUAN_"):
            monkeypatch.delenv(name)


def invoke(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(main, args, env=env)


def assert_one_line_error(result: Result, line: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # handled, not a crash
    assert "Traceback" not in result.output
    assert result.output.splitlines() == [f"Error: {line}"]


def bad_value(name: str) -> str:
    """A value that setting `name` refuses."""
    variable = f"TONGKUAN_{name.upper()}"
    if variable in BAD:
        return BAD[variable][0]
    field = FIELDS[name]
    kinds = {bool: "maybe", int: "many", float: "lots"}
    return kinds.get(field.annotation, "nope")  # type: ignore[call-overload]


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize("name", sorted(set(FIELDS) - FREE))
def test_every_setting_refuses_a_bad_value_in_one_line(name: str, tmp_path: Path) -> None:
    variable, value = f"TONGKUAN_{name.upper()}", bad_value(name)
    result = invoke(["whiten", "--data-dir", str(tmp_path / "data")], {variable: value})
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    (line,) = result.output.splitlines()
    shown = " (value not shown)" if name in SECRET_SETTINGS else f"={value!r}"
    assert line.startswith(f"Error: {variable}{shown} is not valid: use ")
    assert line.endswith(")") and "(empty or unset: the default" in line


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize("variable", sorted(BAD))
def test_a_bad_setting_is_one_line_naming_it_its_value_and_what_is_allowed(variable: str, tmp_path: Path) -> None:
    value, line = BAD[variable]
    result = invoke(["serve", "--data-dir", str(tmp_path / "data")], {variable: value})
    assert_one_line_error(result, line)
    if "(value not shown)" in line:
        assert value not in result.output


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["ingest", "{source}"],
        ["ingest", "{source}", "--ack"],
        ["delete", "x"],
        ["export", "{tmp}/out.jsonl"],
        ["whiten"],
        ["tune"],
        ["quantize"],
        ["clean-images"],
        ["search", "{picture}"],
        ["demo", "{data}"],
        ["migrate", "--from", "{tmp}", "--to", "postgresql://127.0.0.1:9/none", "--vectors", "milvus://127.0.0.1:9"],
    ],
    ids=[
        "serve",
        "ingest",
        "ingest-ack",
        "delete",
        "export",
        "whiten",
        "tune",
        "quantize",
        "clean-images",
        "search",
        "demo",
        "migrate",
    ],
)
def test_every_command_reports_a_bad_setting_in_one_line(command: list[str], tmp_path: Path, data_root: Path) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text('{"itemId": "k", "images": ["k.jpg"]}\n')
    places = {"source": str(source), "tmp": str(tmp_path), "picture": str(data_root / ICONIC), "data": str(data_root)}
    args = [part.format(**places) for part in command]
    if command[0] != "migrate":
        args += ["--data-dir", str(tmp_path / "data")]
    value, line = BAD["TONGKUAN_ALLOW_LOOPBACK_FETCH"]
    assert_one_line_error(invoke(args, {"TONGKUAN_ALLOW_LOOPBACK_FETCH": value}), line)
    assert not (tmp_path / "data").exists()  # refused before touching anything


@pytest.mark.usefixtures("clean_environment")
def test_a_bad_value_in_the_data_directorys_toml_names_the_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "tongkuan.toml").write_text("threads = 0\n")
    result = invoke(["whiten", "--data-dir", str(data_dir)], {})
    assert_one_line_error(
        result,
        f"threads=0 in {data_dir / 'tongkuan.toml'} is not valid: use a whole number, at least 1 "
        "(empty or unset: the default, 2)",
    )
    (data_dir / "tongkuan.toml").write_text("threads = = 2\n")
    result = invoke(["whiten", "--data-dir", str(data_dir)], {})
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.startswith(f"Error: {data_dir / 'tongkuan.toml'} is not valid TOML: ")
    assert len(result.output.splitlines()) == 1


@pytest.mark.usefixtures("clean_environment")
def test_an_empty_variable_means_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = ("DATA_DIR", "ALLOW_LOOPBACK_FETCH", "THREADS", "INDEX_KIND", "ADMIN_TOKEN", "CATALOG_URL", "APPS")
    for name in empty:
        monkeypatch.setenv(f"TONGKUAN_{name}", "")
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.data_dir == tmp_path / "data"
    for name in empty[1:]:
        assert settings.value(name.lower()) == FIELDS[name.lower()].default


@pytest.mark.usefixtures("clean_environment")
def test_the_command_line_runs_with_empty_variables(tmp_path: Path, model_cache: Path) -> None:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    env = {"TONGKUAN_ALLOW_LOOPBACK_FETCH": "", "TONGKUAN_THREADS": "", "TONGKUAN_MODEL": "efficientnet-lite0"}
    result = invoke(["delete", "nothing", "--data-dir", str(data_dir)], env)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output  # ran, found nothing
    assert result.output.splitlines() == ["Error: 1 of 1 products not found: nothing"]


@pytest.mark.usefixtures("clean_environment")
def test_a_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    """The data directory and the picture folder must be folders, or paths where one can be made."""
    archive = tmp_path / "shop.tar"
    archive.write_bytes(b"a file, not a folder")
    result = invoke(["delete", "x", "--data-dir", str(archive / "data")], {})
    assert_one_line_error(
        result,
        f"data_dir={str(archive / 'data')!r} is not valid: use a folder that exists or can be created "
        "(empty or unset: the default, data)",
    )
    result = invoke(["delete", "x", "--data-dir", str(tmp_path / "data")], {"TONGKUAN_IMAGE_DIR": str(archive)})
    assert_one_line_error(
        result,
        f"TONGKUAN_IMAGE_DIR={str(archive)!r} is not valid: use a folder that exists or can be created "
        "(empty or unset: the default)",
    )
    assert not (tmp_path / "data").exists()  # refused before touching anything


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize("command", [["serve"], ["ingest", "{source}"]], ids=["serve", "ingest"])
def test_an_unknown_model_option_is_one_line(command: list[str], tmp_path: Path) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text('{"itemId": "k", "images": ["k.jpg"]}\n')
    args = [part.format(source=source) for part in command]
    result = invoke([*args, "--data-dir", str(tmp_path / "data"), "--model", "efficientnet-b7"], {})
    assert_one_line_error(result, BAD["TONGKUAN_MODEL"][1].replace("TONGKUAN_MODEL=", "model=", 1))
    assert not (tmp_path / "data").exists()


def test_serve_reports_a_bad_setting_without_a_traceback(tmp_path: Path) -> None:
    """The real command in its own process: the empty variable is the default, the bad one
    is one line on stderr and exit status 1."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TONGKUAN_")}
    env.update({"TONGKUAN_ALLOW_LOOPBACK_FETCH": "", "TONGKUAN_THREADS": "many"})
    done = subprocess.run(
        [sys.executable, "-m", "tongkuan.cli", "serve", "--data-dir", str(tmp_path / "data"), "--port", "9"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"Error: {BAD['TONGKUAN_THREADS'][1]}"]


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize(
    ("value", "proxy_headers", "trusted"),
    [(None, False, None), ("10.0.0.2,10.1.0.0/16", True, "10.0.0.2,10.1.0.0/16"), ("127.0.0.1", True, "127.0.0.1")],
)
def test_serve_trusts_forwarded_headers_only_from_the_configured_proxies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, proxy_headers: bool, trusted: str | None
) -> None:
    import uvicorn

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    env = {"TONGKUAN_FORWARDED_ALLOW_IPS": value} if value else {}
    result = invoke(["serve", "--data-dir", str(tmp_path / "data")], env)
    assert result.exit_code == 0, result.output
    assert seen["proxy_headers"] is proxy_headers and seen.get("forwarded_allow_ips") == trusted


@pytest.mark.usefixtures("clean_environment")
def test_serve_bounds_request_heads_and_idle_connections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from tongkuan.cli.common import KEEP_ALIVE_S, MAX_REQUEST_HEAD

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    result = invoke(["serve", "--data-dir", str(tmp_path / "data")], {})
    assert result.exit_code == 0, result.output
    assert (seen["http"], seen["h11_max_incomplete_event_size"], seen["timeout_keep_alive"]) == (
        "h11",
        MAX_REQUEST_HEAD,
        KEEP_ALIVE_S,
    )
    assert seen["access_log"] is False


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize("extra", [["--dims", "64"], ["--shrinkage", "0.2"], ["--neighbours", "on"]])
def test_whiten_remove_refuses_the_options_of_learning_instead_of_ignoring_them(
    extra: list[str], tmp_path: Path
) -> None:
    result = invoke(["whiten", "--remove", *extra, "--data-dir", str(tmp_path / "data")], {})
    assert result.exit_code == 2, result.output  # a usage error, before anything is opened
    assert f"--remove forgets the whitening: {extra[0]} only applies when learning one" in result.output
    assert not (tmp_path / "data").exists()
