"""Dependency floors and pins stay above every release with a known advisory.

`make audit` asks the advisory database (network); this test needs none: it checks pyproject.toml
and constraints.txt against the table below, the first fixed version of each advisory we know of.
When an advisory appears, add it here, raise the floor or the pin, and run `make lock`.
"""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent

# package -> ((advisory ids, first fixed version), ...)
ADVISORIES: dict[str, tuple[tuple[str, str], ...]] = {
    # Direct dependencies (floors in pyproject.toml)
    "aiohttp": (
        ("CVE-2024-52304", "3.10.11"),
        ("CVE-2025-53643", "3.12.14"),
        (
            "CVE-2025-69223 CVE-2025-69224 CVE-2025-69225 CVE-2025-69226 CVE-2025-69227 "
            "CVE-2025-69228 CVE-2025-69229 CVE-2025-69230",
            "3.13.3",
        ),
        (
            "CVE-2026-22815 CVE-2026-34513 CVE-2026-34514 CVE-2026-34515 CVE-2026-34516 "
            "CVE-2026-34517 CVE-2026-34518 CVE-2026-34519 CVE-2026-34520 CVE-2026-34525",
            "3.13.4",
        ),
        ("CVE-2026-34993 CVE-2026-47265", "3.14.0"),
        (
            "CVE-2026-54273 CVE-2026-54274 CVE-2026-54275 CVE-2026-54276 CVE-2026-54277 "
            "CVE-2026-54278 CVE-2026-54279 CVE-2026-54280",
            "3.14.1",
        ),
        ("CVE-2026-59881 CVE-2026-69243", "3.14.2"),
        ("CVE-2026-69244", "3.14.3"),
    ),
    "jinja2": (
        ("CVE-2024-22195", "3.1.3"),
        ("CVE-2024-34064", "3.1.4"),
        ("CVE-2024-56201 CVE-2024-56326", "3.1.5"),
        ("CVE-2025-27516", "3.1.6"),
    ),
    "pyyaml": (("CVE-2020-14343", "5.4"),),
    "sqlalchemy": (("CVE-2019-7164 CVE-2019-7548", "1.3.0"),),
    "asyncpg": (("CVE-2020-17446", "0.21.0"),),
    "pydantic": (("CVE-2024-3772", "2.4.0"),),
    "pytest": (("CVE-2025-71176", "9.0.3"),),
    # Transitive dependencies (pins in constraints.txt)
    "urllib3": (
        ("CVE-2024-37891", "2.2.2"),
        ("CVE-2025-50181 CVE-2025-50182", "2.5.0"),
        ("CVE-2025-66418 CVE-2025-66471", "2.6.0"),
        ("CVE-2026-21441", "2.6.3"),
        ("CVE-2026-44431 CVE-2026-44432", "2.7.0"),
    ),
    "requests": (
        ("CVE-2024-35195", "2.32.0"),
        ("CVE-2024-47081", "2.32.4"),
        ("CVE-2026-25645", "2.33.0"),
    ),
    "certifi": (("CVE-2024-39689", "2024.7.4"),),
    "idna": (("CVE-2024-3651", "3.7"), ("CVE-2026-45409", "3.15")),
    "h11": (("CVE-2025-43859", "0.16.0"),),
    "mako": (("CVE-2022-40023", "1.2.2"), ("CVE-2026-41205 CVE-2026-44307", "1.3.12")),
    "python-dotenv": (("CVE-2026-28684", "1.2.2"),),
    "pydantic-settings": (("GHSA-4xgf-cpjx-pc3j", "2.14.2"),),
    "cryptography": (
        ("CVE-2024-26130", "42.0.4"),
        ("CVE-2024-12797", "44.0.1"),
        ("CVE-2026-26007", "46.0.5"),
        ("CVE-2026-34073", "46.0.6"),
        ("CVE-2026-39892", "46.0.7"),
        ("CVE-2026-69247", "50.0.0"),
    ),
    "werkzeug": (
        ("CVE-2024-34069", "3.0.3"),
        ("CVE-2024-49766 CVE-2024-49767", "3.0.6"),
        ("CVE-2025-66221", "3.1.4"),
        ("CVE-2026-21860", "3.1.5"),
        ("CVE-2026-27199", "3.1.6"),
    ),
    "flask": (("CVE-2023-30861", "2.3.2"), ("CVE-2025-47278", "3.1.1")),
    "flask-cors": (
        ("CVE-2024-6221", "4.0.2"),
        ("CVE-2024-6839 CVE-2024-6844 CVE-2024-6866", "6.0.0"),
    ),
    "pygments": (("CVE-2022-40896", "2.15.0"), ("CVE-2026-4539", "2.20.0")),
    "filelock": (("CVE-2025-68146", "3.20.1"), ("CVE-2026-22701", "3.20.3")),
    "markdown-it-py": (("CVE-2023-26302 CVE-2023-26303", "2.2.0"),),
    "oauthlib": (("CVE-2022-36087", "3.2.1"),),
    # The installer and the build backend
    "pip": (
        ("CVE-2025-8869", "25.3"),
        ("CVE-2026-1703", "26.0"),
        ("CVE-2026-3219 CVE-2026-6357", "26.1"),
        ("CVE-2026-8643", "26.1.2"),
        ("PYSEC-2026-3721", "26.2"),
    ),
    "setuptools": (
        ("CVE-2024-6345", "70.0.0"),
        ("CVE-2025-47273", "78.1.1"),
        ("CVE-2026-59890", "83.0.0"),
    ),
}

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;#]+)$")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _declared() -> list[Requirement]:
    """Every requirement pyproject.toml declares: runtime, every extra, and the build system."""
    project = _pyproject()
    lines = list(project["project"]["dependencies"])
    for extra in project["project"].get("optional-dependencies", {}).values():
        lines.extend(extra)
    lines.extend(project["build-system"]["requires"])
    return [Requirement(line) for line in lines]


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, raw in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"constraints.txt:{number}: not an exact pin: {line!r}"
        name = canonicalize_name(match["name"])
        assert name not in pins, f"constraints.txt:{number}: {name} pinned twice"
        pins[name] = Version(match["version"])
    return pins


def _floor(requirement: Requirement) -> Version | None:
    floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=")]
    return max(floors, default=None)


def _newest_fix(name: str) -> tuple[str, Version]:
    ids, fixed = max(ADVISORIES[name], key=lambda advisory: Version(advisory[1]))
    return ids, Version(fixed)


def test_the_advisory_table_names_real_versions():
    for name, advisories in ADVISORIES.items():
        assert name == canonicalize_name(name)
        for ids, fixed in advisories:
            assert re.fullmatch(r"((CVE-\d{4}-\d+|GHSA-[\w-]+|PYSEC-\d{4}-\d+) ?)+", ids), ids
            Version(fixed)


@pytest.mark.parametrize(
    "requirement",
    [r for r in _declared() if canonicalize_name(r.name) in ADVISORIES],
    ids=lambda r: r.name,
)
def test_every_declared_floor_is_above_its_known_advisories(requirement):
    name = canonicalize_name(requirement.name)
    ids, fixed = _newest_fix(name)
    floor = _floor(requirement)
    assert floor is not None and floor >= fixed, (
        f"pyproject.toml allows {requirement}: {ids} is fixed only in {name} {fixed}"
    )


def test_every_pin_is_above_its_known_advisories():
    pins = _pins()
    vulnerable = []
    for name, version in pins.items():
        for ids, fixed in ADVISORIES.get(name, ()):
            if version < Version(fixed):
                vulnerable.append(f"{name}=={version} ({ids}; fixed in {fixed})")
    assert not vulnerable, "constraints.txt pins vulnerable versions: " + ", ".join(vulnerable)


def test_constraints_pin_every_declared_dependency_within_its_range():
    pins = _pins()
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"constraints.txt does not pin {name} (run `make lock`)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject.toml's {requirement}"
        )


def test_constraints_pin_the_installer_and_the_advised_transitive_packages():
    pins = _pins()
    for name in ("pip", "setuptools", "urllib3", "requests", "certifi", "idna", "h11", "mako"):
        assert name in pins, f"constraints.txt does not pin {name}"


def test_make_install_ci_and_the_image_install_through_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"pip install .*-c constraints\.txt -e '\.\[test\]'", makefile)
    assert re.search(r"pip-audit --strict .*-r constraints\.txt", makefile)
    assert re.search(r"^COPY constraints\.txt ", dockerfile, re.MULTILINE)
    assert re.search(r"pip install -c constraints\.txt \.$", dockerfile, re.MULTILINE)
