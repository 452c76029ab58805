"""README.md's configuration table is generated (python -m veil_tools.configdoc) and kept current."""

from __future__ import annotations

import re
from pathlib import Path

from veil_tools import configdoc

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\| `(VEIL_[A-Z0-9_]+)` \| ([^|]*) \| ((?:[^|\\]|\\.)*) \|", re.MULTILINE)


def rows(table: str) -> dict[str, tuple[str, str]]:
    return {m.group(1): (m.group(2), m.group(3)) for m in ROW.finditer(table)}


def test_readme_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert configdoc.current_table(readme) == configdoc.table(), (
        "README.md's configuration table is out of date: run python -m veil_tools.configdoc --write README.md")


def test_every_declared_variable_is_in_the_table() -> None:
    """A config class the table does not know (not in configdoc.components) fails here."""
    declared = set()
    for folder in ("veil", "services"):
        for path in (ROOT / folder).rglob("*.py"):
            declared |= set(re.findall(r'env_field\(\s*"(VEIL_[A-Z0-9_]+)"', path.read_text()))
    assert declared, "no env_field declarations found"
    assert set(rows(configdoc.table())) == declared


def test_one_row_per_variable_with_each_programs_default() -> None:
    table = configdoc.table()
    names = [m.group(1) for m in ROW.finditer(table)]
    assert len(names) == len(set(names))
    grpc_users, grpc_default = rows(table)["VEIL_GRPC_ADDRESS"]
    assert "gateway `[::]:50050`" in grpc_default and "anonymizer `[::]:50051`" in grpc_default
    assert "gateway" in grpc_users and "anonymizer" in grpc_users
    users, default = rows(table)["VEIL_DATABASE_URL"]
    assert default == "`sqlite:///var/veil.db`" and "veil.db (migrations)" in users
    assert rows(table)["VEIL_TENANT_TOKENS_FILE"][1] == "(required)"
    assert rows(table)["VEIL_UNLEARNER_TARGET"][1] == "unset"
    # A path inside the source tree is shown relative to it, never as this machine's path.
    assert rows(table)["VEIL_MODEL_URI"][1] == "`models/diffae-synth32`"
    assert str(ROOT) not in table


def test_write_replaces_only_the_block(tmp_path: Path) -> None:
    document = tmp_path / "README.md"
    document.write_text(f"# Title\n\nbefore\n{configdoc.BEGIN}\nstale\n{configdoc.END}\nafter\n")
    assert configdoc.main(["--write", str(document)]) == 0
    text = document.read_text()
    assert text.startswith("# Title\n\nbefore\n") and text.endswith(f"{configdoc.END}\nafter\n")
    assert "stale" not in text and configdoc.current_table(text) == configdoc.table()
    missing = tmp_path / "other.md"
    missing.write_text("no markers\n")
    assert configdoc.main(["--write", str(missing)]) == 1
    assert missing.read_text() == "no markers\n"
