import pytest

from harness.errors import ConfigError
from harness.paths import create_unique_dir, inside, sanitize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("demo", "demo"),
        ("../../etc/passwd", "etc-passwd"),
        ("my study / v2", "my-study-v2"),
        ("...", "unnamed"),
        ("a" * 200, "a" * 80),
        ("étude énergie", "etude-energie"),
        ("Straße Ærø Łódź", "Strasse-AEro-Lodz"),
        ("ｆｕｌｌ width", "full-width"),
        ("能耗", "unnamed"),
    ],
)
def test_sanitize(text, expected):
    assert sanitize(text) == expected


def test_unique_dir_gets_suffixes_and_never_reuses(tmp_path):
    first = create_unique_dir(tmp_path, "study")
    second = create_unique_dir(tmp_path, "study")
    third = create_unique_dir(tmp_path, "study")
    assert [first.name, second.name, third.name] == ["study", "study_1", "study_2"]


def test_unique_dir_cannot_escape_root(tmp_path):
    made = create_unique_dir(tmp_path / "root", "../../outside")
    assert made.parent == tmp_path / "root"
    with pytest.raises(ConfigError, match="would leave the output root"):
        inside(tmp_path / "root", tmp_path / "root" / ".." / "x")
