"""The deployment files, checked the way an operator relies on them, without Docker or systemd.

No container engine runs here, so the Dockerfile is read, not built: the checks are what the image
promises (a pinned slim Python, a non-root user, the scheduler as its command, a health check,
volumes, no secrets baked in). What it installs is checked for real: the wheel is built from this
checkout and installed on its own, and digest must find its templates and migrations inside that
installed package, not in the source tree.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from fnmatch import fnmatch
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from factories import ROOT

DEPLOY = ROOT / "deploy"
SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN", "DATABASE_URL")


# --- Dockerfile ---------------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs: comments dropped, backslash continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, rest = whole.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions(ROOT / "Dockerfile")


@pytest.fixture(scope="module")
def final_stage(dockerfile: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(dockerfile) if keyword == "FROM")
    return dockerfile[last_from:]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def only(stage: list[tuple[str, str]], keyword: str) -> str:
    found = [rest for k, rest in stage if k == keyword]
    assert found, f"no {keyword} in the final stage"
    return found[-1]  # the last one is the one Docker uses


def env_pairs(arguments: str) -> dict[str, str]:
    """``ENV A=1 B="two words"`` (the form the Dockerfile uses) as a dict."""
    pairs = {}
    for word in shlex.split(arguments):
        name, equals, value = word.partition("=")
        assert equals, f"ENV {arguments!r}: write ENV NAME=value"
        pairs[name] = value
    return pairs


def test_every_stage_is_a_pinned_slim_python_3_11_or_later(dockerfile: list[tuple[str, str]]) -> None:
    images = [rest.split()[0] for keyword, rest in dockerfile if keyword == "FROM"]
    assert images
    for image in images:
        match = re.fullmatch(r"python:3\.(\d+)(?:\.\d+)?-slim-(bookworm|trixie)(?:@sha256:[0-9a-f]{64})?", image)
        assert match, f"{image}: use python:3.X-slim-<debian release>, pinned"
        assert int(match.group(1)) >= 11


def test_the_image_runs_the_scheduler_as_a_non_root_user(final_stage: list[tuple[str, str]]) -> None:
    user = only(final_stage, "USER")
    assert user.split(":")[0] not in ("root", "0")
    runs = " ".join(rest for keyword, rest in final_stage if keyword == "RUN")
    assert re.search(rf"useradd\b[^&]*--uid 10001\b[^&]*\b{re.escape(user)}\b", runs), "create the user with uid 10001"

    assert exec_form(only(final_stage, "ENTRYPOINT")) == ["digest"]
    assert exec_form(only(final_stage, "CMD")) == ["schedule"]
    assert only(final_stage, "STOPSIGNAL") == "SIGTERM"
    assert env_pairs(" ".join(r for k, r in final_stage if k == "ENV"))["DIGEST_CONFIG"] == "/config/config.toml"


def test_the_health_check_asks_digest_health(final_stage: list[tuple[str, str]]) -> None:
    check = only(final_stage, "HEALTHCHECK")
    options, _, command = check.partition("CMD ")
    assert exec_form(command) == ["digest", "health"]
    for option in ("--interval=", "--timeout=", "--start-period=", "--retries="):
        assert option in options


def test_config_and_data_are_volumes_and_data_is_writable_by_the_user(final_stage: list[tuple[str, str]]) -> None:
    volumes = exec_form(only(final_stage, "VOLUME"))
    assert {"/config", "/data"} <= set(volumes)
    assert only(final_stage, "WORKDIR") == "/data"
    # Ownership set before VOLUME survives into a new named volume; after it, it is discarded.
    keywords = [k for k, _ in final_stage]
    chown = next(i for i, (k, rest) in enumerate(final_stage) if k == "RUN" and "chown" in rest and "/data" in rest)
    assert chown < keywords.index("VOLUME")


def test_no_secret_is_baked_into_the_image(dockerfile: list[tuple[str, str]]) -> None:
    for keyword, rest in dockerfile:
        if keyword in ("ENV", "ARG"):
            names = env_pairs(rest) if keyword == "ENV" else {rest.split("=")[0]: ""}
            for name in names:
                assert not any(word in name.upper() for word in SECRET_WORDS), f"{keyword} {name}: a secret?"
        if keyword in ("COPY", "ADD"):
            assert ".env" not in rest and "digest.env" not in rest


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule, for the patterns used here: the last matching line wins; ``!`` re-includes;
    a directory pattern covers what is inside it."""
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = any(fnmatch(p, pattern) for p in prefixes)
        if pattern.startswith("**/"):
            hit = hit or any(fnmatch(part, pattern[3:]) for part in parts)
        if hit:
            excluded = not negated
    return excluded


def test_the_build_context_has_what_the_dockerfile_copies_and_nothing_private(
    dockerfile: list[tuple[str, str]],
) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        source
        for keyword, rest in dockerfile
        if keyword == "COPY" and "--from" not in rest
        for source in rest.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignore_excludes(source, patterns), f"COPY {source}: excluded by .dockerignore"
    for private in (
        ".git/HEAD",
        ".venv/bin/python",
        ".digest/digest.sqlite3",
        "out/2026-W48.html",
        "bench/results/send.json",
        "tests/cli/test_cli.py",
        ".pytest_cache/v",
        "digest.env",
        "src/digest/__pycache__/cli.cpython-311.pyc",
    ):
        assert dockerignore_excludes(private, patterns), f"{private} would be sent to the Docker daemon"


# --- the wheel the image installs ------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel the Dockerfile's build stage makes (``pip wheel .``), built from this checkout.

    With hatchling installed, the build runs offline against it (``--no-build-isolation``);
    without, pip fetches hatchling into an isolated environment as the Docker build does.
    """
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--quiet", "-w", str(out)]
    try:
        import hatchling  # noqa: F401
    except ImportError:
        pass
    else:
        command.append("--no-build-isolation")
    subprocess.run([*command, str(ROOT)], check=True, capture_output=True, text=True, timeout=300)
    (built,) = out.glob("digest-*.whl")
    return built


def test_the_wheel_carries_templates_migrations_and_the_command(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    for needed in (
        "digest/templates/email/issue.html.j2",
        "digest/templates/email/issue.txt.j2",
        "digest/templates/email/_article.html.j2",
        "digest/templates/email/style.css",
        "digest/store/migrations/env.py",
        "digest/store/migrations/script.py.mako",
        "digest/store/migrations/versions/0001_ledger.py",
        "digest/preview/templates/editor.html.j2",
        "digest/logs.py",
    ):
        assert needed in names, f"{needed} is missing from {wheel.name}"
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "templates/"))]
    assert re.search(r"^digest = digest\.cli:main$", scripts, re.M)


def test_the_installed_wheel_builds_an_issue_from_its_own_files(wheel: Path, tmp_path: Path) -> None:
    """Installed apart from the checkout, digest renders the sample issue and migrates a new
    database using only files inside the installed package."""
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--quiet"]
    subprocess.run([*pip, "--target", str(site), wheel], check=True, capture_output=True, text=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of the editable install's path
    env.pop("DIGEST_CONFIG", None)
    probe = (
        "import json, digest, digest.issue.render, digest.store; "
        f"digest.store.Store.open('sqlite:///{tmp_path / 'probe.sqlite3'}').close(); "
        "print(json.dumps({'package': digest.__file__, 'templates': str(digest.issue.render.bundled_templates())}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert Path(found["package"]).resolve().is_relative_to(site.resolve())
    assert Path(found["templates"]).resolve() == (site / "digest" / "templates" / "email").resolve()

    out = tmp_path / "out"
    build = ["build", "--config", str(ROOT / "config.toml"), "--now", "2026-11-27T09:00", "--out", str(out)]
    built = subprocess.run(
        [sys.executable, "-m", "digest", *build],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    html = (out / "2026-W48.html").read_text(encoding="utf-8")
    assert "Statecraft Weekly" in html and "<table" in html


# --- systemd ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read(DEPLOY / "digest.service", encoding="utf-8")
    return parser


def seconds(span: str) -> float:
    """A systemd time span as used in units: ``120``, ``90s``, ``2min``, ``2min 30s``."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+)\s*([a-z]*)", span):
        total += int(number) * units[unit]
    return total


def test_the_service_runs_the_scheduler_and_stops_it_gently(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    assert service["Type"] == "simple"
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "digest" and argv[0].startswith("/")
    assert argv[1] == "schedule" and argv[argv.index("--config") + 1].endswith(".toml")
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert seconds(service["TimeoutStopSec"]) >= 60, "a batch in flight needs time to finish"
    assert service["User"] not in ("root", "0")
    assert "network-online.target" in unit["Unit"]["After"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_service_reads_secrets_from_a_file_and_can_write_only_its_state(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    assert service["EnvironmentFile"].lstrip("-").startswith("/etc/")
    for assignment in shlex.split(service.get("Environment", "")):
        assert not any(word in assignment.split("=")[0].upper() for word in SECRET_WORDS)
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["StateDirectory"] == "digest"
    assert "/var/lib/digest" in service["ReadWritePaths"].split()
    assert service["WorkingDirectory"] == "/var/lib/digest"


# --- cron ----------------------------------------------------------------------------------


CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$|^[a-z]{3}$", re.I)


def cron_file() -> tuple[dict[str, str], list[list[str]]]:
    """The file's ``NAME=value`` settings, and its entries as ``[5 time fields, user, command]``."""
    settings: dict[str, str] = {}
    entries: list[list[str]] = []
    for raw in (DEPLOY / "digest-send.cron").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"^[A-Z_]+=", line):
            name, _, value = line.partition("=")
            settings[name] = value
            continue
        entries.append(line.split(None, 6))
    return settings, entries


def test_cron_sends_on_fridays_at_nine_in_the_newsletter_zone_without_overlapping() -> None:
    settings, entries = cron_file()
    assert entries, "no cron entry"
    ZoneInfo(settings["CRON_TZ"])  # a real IANA zone
    for fields in entries:
        assert len(fields) == 7, f"{fields}: five time fields, a user and a command (/etc/cron.d format)"
        time_fields, user, command = fields[:5], fields[5], fields[6]
        assert all(CRON_FIELD.match(f) for f in time_fields), time_fields
        assert time_fields == ["0", "9", "*", "*", "5"] or time_fields[4].lower() == "fri"
        assert user not in ("root", "0")
        assert "%" not in command, "cron turns % into a newline"
        argv = shlex.split(command)
        assert argv[:2] == ["flock", "-n"], "two runs must never overlap"
        inner = " ".join(argv)
        assert re.search(r"/digest send --config \S+\.toml", inner)


def test_the_deploy_commands_exist_in_the_cli() -> None:
    """`schedule`, `health` and `send --config` are what the files above run."""
    from digest.cli import cli

    for name in ("schedule", "health", "send"):
        command = cli.commands.get(name)
        assert command is not None, f"`digest {name}` is used by the deploy files"
        assert any("--config" in p.opts for p in command.params), f"`digest {name}` takes --config"


def test_the_compose_example_stops_gently_and_keeps_secrets_out() -> None:
    """Read as text (no YAML parser among the dependencies): the lines an operator relies on."""
    text = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    grace = re.search(r"^\s+stop_grace_period:\s*(\S+)", text, re.M)
    assert grace and seconds(grace.group(1).replace("m", "min")) >= 60
    assert re.search(r"^\s+env_file:\s*\S+", text, re.M)
    assert re.search(r"^\s+- \./config:/config(:ro)?$", text, re.M)
    assert re.search(r"^\s+- [\w.-]+:/data$", text, re.M)
    assert not re.search(r"^\s+environment:", text, re.M), "secrets belong in the env_file"
