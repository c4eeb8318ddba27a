"""Testing/mutations.py refuses a breakage whose old text is not found exactly once."""

from __future__ import annotations

import pytest

from mutations import Breakage, StaleBreakage, substituted


def _breakage(old: str) -> Breakage:
    return Breakage("example", "an example", "module.py", old, "broken()", ("Testing/test_x.py",))


def test_old_text_found_once_is_substituted(tmp_path):
    (tmp_path / "module.py").write_text("a = 1\nworking()\n")
    assert substituted(_breakage("working()"), tmp_path) == "a = 1\nbroken()\n"


@pytest.mark.parametrize("text, count", [("a = 1\n", 0), ("working()\nworking()\n", 2)])
def test_old_text_missing_or_repeated_stops_the_script(tmp_path, text, count):
    (tmp_path / "module.py").write_text(text)
    with pytest.raises(StaleBreakage, match=f"example: module.py holds the old text {count} times"):
        substituted(_breakage("working()"), tmp_path)


def test_missing_file_stops_the_script(tmp_path):
    with pytest.raises(StaleBreakage, match="module.py does not exist"):
        substituted(_breakage("working()"), tmp_path)
