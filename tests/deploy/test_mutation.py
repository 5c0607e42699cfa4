"""`make mutation`: its config names real modules, tests and definitions; its string operator
and its filters do what they say. Cheap: no mutant is run here."""

from __future__ import annotations

import re
import shlex

import parso
import pytest

from devstack import REPO_ROOT
from tests.deploy.support import load_script

mutation = load_script("scripts/mutation.py")
operators = load_script("scripts/mutation_operators.py")
SETTINGS = mutation.load_settings()
TARGETS = {target.path: target for target in SETTINGS.targets}


def test_the_security_critical_modules_are_all_configured():
    assert set(TARGETS) >= {
        "shared/roles.py",
        "shared/assertion.py",
        "services/api_gateway/auth.py",
        "services/api_gateway/tokens.py",
        "services/api_gateway/proxy.py",
        "services/api_gateway/state/memory.py",
        "services/api_gateway/state/redis.py",
        "services/portfolio/accounts/passwords.py",
        "services/portfolio/accounts/throttle.py",
        "services/frontend/sessions.py",
        "services/frontend/redis_sessions.py",
        "services/frontend/csrf.py",
    }
    assert len(TARGETS) == len(SETTINGS.targets), "a module is listed twice"
    assert SETTINGS.target_score == 0.9


@pytest.mark.parametrize("path", sorted(TARGETS))
def test_each_module_and_its_tests_exist(path):
    target = TARGETS[path]
    assert (REPO_ROOT / path).is_file()
    assert target.tests, f"{path} has no tests"
    for test in target.tests:
        file = test.split("::")[0]
        assert re.fullmatch(r"tests/[\w/]+/test_\w+\.py", file), test
        assert (REPO_ROOT / file).is_file(), test


@pytest.mark.parametrize("path", sorted(p for p, t in TARGETS.items() if t.only))
def test_the_definitions_a_module_is_limited_to_exist(path):
    target = TARGETS[path]
    spans = mutation.definition_lines((REPO_ROOT / path).read_text(), target.only)
    assert len(spans) == len(target.only)
    assert all(0 < low <= high for low, high in spans)


def test_an_unknown_definition_is_named():
    with pytest.raises(KeyError, match="nowhere"):
        mutation.definition_lines("X = 1\ndef f():\n    pass\n", ("X", "nowhere"))


def test_definitions_are_found_by_name_and_by_class_and_method():
    source = "A = {1}\n\nclass C:\n    def m(self):\n        return 1\n\ndef f():\n    pass\n"
    assert mutation.definition_lines(source, ("A", "C.m", "f", "C")) == [
        (1, 1),
        (4, 5),
        (7, 8),
        (3, 5),
    ]


def test_mutants_in_type_hints_are_found_to_be_left_out():
    source = "def f(a: str | None, b=1) -> int | None:\n    x: list[int] = []\n    return a | b\n"
    # The hints of a, of the return and of x; not the `a | b` of the code.
    assert sorted(mutation.annotation_spans(source)) == [
        ((1, 9), (1, 19)),
        ((1, 29), (1, 39)),
        ((2, 7), (2, 16)),
    ]


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ('"x-username"', '"XXx-usernameXX"'),
        ("b'trailer'", "b'XXtrailerXX'"),
        ('"""three"""', '"""XXthreeXX"""'),
        ("rb'raw'", "rb'XXrawXX'"),
        ('""', '"XXXX"'),
    ],
)
def test_a_marked_string_keeps_its_prefix_and_quotes(literal, expected):
    assert operators.marked(literal) == expected


def positions(source: str) -> list[str]:
    """Return the strings of `source` the operator would mutate."""
    operator = operators.MarkString()
    found = []
    stack = [parso.parse(source)]
    while stack:
        node = stack.pop()
        for start, end in operator.mutation_positions(node):
            found.append(node.get_code(include_prefix=False))
            assert (start, end) == (node.start_pos, node.end_pos)
        stack.extend(getattr(node, "children", []))
    return sorted(found)


def test_docstrings_and_raised_messages_are_left_alone_and_data_strings_are_not():
    source = (
        '"""Module docstring."""\n'
        "HEADERS = {'x-user', b'te'}\n"
        "def f(claims):\n"
        '    """Function docstring."""\n'
        '    if claims["roles"] == "admin":\n'
        '        raise ValueError("roles must be a list")\n'
        '    return f"{claims}"\n'
    )
    assert positions(source) == ['"admin"', '"roles"', "'x-user'", "b'te'"]


def test_the_mutated_string_is_the_marked_one():
    module = parso.parse("x = 'a'\n")
    string = module.children[0].children[0].children[2]
    mutated = operators.MarkString().mutate(string, 0)
    assert mutated.value == "'XXaXX'"
    assert mutated.start_pos == string.start_pos


def test_the_provider_offers_the_string_operator():
    provider = operators.OperatorProvider()
    assert list(provider) == ["MarkString"]
    assert provider["MarkString"] is operators.MarkString


def test_mutation_is_not_part_of_make_test():
    makefile = (REPO_ROOT / "Makefile").read_text()
    test_rule = re.search(r"^test: (.*)$", makefile, re.MULTILINE)
    assert test_rule is not None
    assert "mutation" not in test_rule.group(1)
    assert re.search(r"^mutation: ", makefile, re.MULTILINE)
    assert "nice -n 10" in makefile


def test_a_keyword_only_marker_is_not_taken_for_a_multiplication():
    source = "def f(a, *, b=2):\n    return a * b + 1\n"
    # `a * b + 1`: the sum (col 11 to 20) and the product in it (col 11 to 16); not the `*` at col 9.
    assert sorted(mutation.arithmetic_spans(source)) == [((2, 11), (2, 16)), ((2, 11), (2, 20))]


def test_a_keyword_reaches_pytest_as_one_argument_through_the_test_command():
    target = mutation.Target(path="m.py", tests=("tests/x/test_a.py",), keyword="not redis")
    command = mutation.test_command(SETTINGS, target)
    assert command[-3:] == ["-k", "not redis", "tests/x/test_a.py"]
    # cosmic-ray splits its test-command with shlex: the expression must stay one argument.
    assert shlex.split(shlex.join(command))[-3:] == ["-k", "not redis", "tests/x/test_a.py"]
