"""The one-pass index of a TOML file's tables and keys: exact lines, whatever the values hold."""

from __future__ import annotations

import json
import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from secretinit._toml_places import TomlPlaces


def test_places_of_headers_keys_and_inline_tables() -> None:
    text = "\n".join(
        [
            "# a comment [secrets.NOT]",  # 1
            "[defaults]",  # 2
            'mode = "0400"  # x = 1',  # 3
            "",  # 4
            "[ secrets . A ]",  # 5
            'template = """',  # 6
            "[secrets.FAKE]",  # 7: inside a string
            "from = 1",  # 8: inside a string
            '"""',  # 9
            "x = [",  # 10
            "  [1, 2],",  # 11: inside an array
            '  "a = b",',  # 12
            "]",  # 13
            'from = "v"',  # 14
            "",  # 15
            '[secrets."b c"]',  # 16
            'inline = { from = "x", mode = "0400" }',  # 17
            'deep.er.key = "y"',  # 18
            '"q\\"k" = 1',  # 19
            "when = 1979-05-27 07:32:00",  # 20
            "[secret.E]",  # 21
            "lit = '''",  # 22
            "'''",  # 23
            "after = 'x'",  # 24
        ]
    )
    tomllib.loads(text)  # valid TOML, as every text given to TomlPlaces is
    places = TomlPlaces(text)
    expected = {
        ("defaults",): 2,
        ("defaults", "mode"): 3,
        ("secrets",): 5,
        ("secrets", "A"): 5,
        ("secrets", "A", "template"): 6,
        ("secrets", "A", "x"): 10,
        ("secrets", "A", "from"): 14,
        ("secrets", "b c"): 16,
        ("secrets", "b c", "inline", "mode"): 17,
        ("secrets", "b c", "deep"): 18,
        ("secrets", "b c", "deep", "er", "key"): 18,
        ("secrets", "b c", 'q"k'): 19,
        ("secrets", "b c", "when"): 20,
        ("secret",): 21,
        ("secret", "E", "after"): 24,
    }
    assert {path: places.line(*path) for path in expected} == expected
    assert ("secrets", "FAKE") not in places
    # An unwritten key is placed at its nearest written parent.
    assert places.line("secrets", "A", "mode") == 5
    assert places.line("nowhere") is None


def test_a_text_it_cannot_follow_keeps_what_was_found() -> None:
    places = TomlPlaces('[a]\nk = "v"\n[b\n')  # never given such a text; must not raise
    assert places.line("a", "k") == 2


def toml_quote(text: str) -> str:
    """A TOML basic string: JSON's escapes, which TOML shares, but no surrogate pairs."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


_KEY = st.one_of(
    st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True),
    st.text(min_size=1, max_size=6).map(toml_quote),  # a quoted key, any characters
)
_TRICKY = st.sampled_from(["[secrets.X]", "k = 1", "#", "'", '"', "\\", "]", "}", "{", ","])
_STRING = st.lists(st.one_of(_TRICKY, st.text(max_size=5)), max_size=4).map("".join)
# What a literal string holds as it is: no control character but a newline.
_LITERAL = st.lists(
    st.one_of(
        _TRICKY,
        st.just("\n"),
        st.text(st.characters(blacklist_categories=["Cc", "Cs"]), max_size=5),
    ),
    max_size=4,
).map("".join)
ML_LITERAL = "'" * 3
ML_BASIC = '"' * 3
_VALUE = st.one_of(
    st.integers().map(str),
    st.booleans().map(lambda b: str(b).lower()),
    _STRING.map(toml_quote),
    _LITERAL.filter(lambda s: "'" not in s and "\n" not in s).map(lambda s: f"'{s}'"),
    _LITERAL.filter(lambda s: ML_LITERAL not in s).map(
        lambda s: f"{ML_LITERAL}\n{s}\n{ML_LITERAL}"
    ),
    _STRING.map(lambda s: f"{ML_BASIC}\n{toml_quote(s)[1:-1]}\n{ML_BASIC}"),
    st.lists(st.integers().map(str), max_size=3).map(
        lambda items: "[\n  " + ",\n  ".join(items) + "\n]"
    ),
    st.just('{ a = "[x]", b = { c = 1 } }'),
)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(_KEY, st.lists(st.tuples(_KEY, _VALUE), max_size=4)),
        min_size=1,
        max_size=5,
    )
)
def test_every_key_is_placed_on_the_line_it_is_written(
    tables: list[tuple[str, list[tuple[str, str]]]],
) -> None:
    text = ""
    expected: dict[tuple[str, ...], int] = {}
    for table, items in tables:
        name = json.loads(table) if table.startswith('"') else table
        if ("top", name) in expected:
            continue
        expected[("top", name)] = text.count("\n") + 1
        text += f"[top.{table}]  # [not.a.header]\n"
        for key, value in items:
            key_name = json.loads(key) if key.startswith('"') else key
            if ("top", name, key_name) in expected:
                continue
            expected[("top", name, key_name)] = text.count("\n") + 1
            text += f"{key} = {value}\n"
    tomllib.loads(text)
    places = TomlPlaces(text)
    assert {path: places.line(*path) for path in expected} == expected


def test_windows_line_endings_keep_their_places() -> None:
    text = (
        '[defaults]\r\nmode = "0400"\r\n\r\n[secrets.A]\r\nfrom = "x"  # c\r\nx = [\r\n 1,\r\n]\r\n'
    )
    tomllib.loads(text)
    places = TomlPlaces(text)
    assert (places.line("secrets", "A"), places.line("secrets", "A", "x")) == (4, 6)
    assert places.line("defaults", "mode") == 2
