"""RFC 7386 merge patch, checked against the RFC's own examples (appendix A), and strict JSON."""

from __future__ import annotations

import json

import pytest

from session_service.log.merge_patch import BadJson, apply_patch, parse_json

RFC_7386_EXAMPLES = [
    ('{"a":"b"}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"b"}', '{"b":"c"}', '{"a":"b","b":"c"}'),
    ('{"a":"b"}', '{"a":null}', "{}"),
    ('{"a":"b","b":"c"}', '{"a":null}', '{"b":"c"}'),
    ('{"a":["b"]}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"c"}', '{"a":["b"]}', '{"a":["b"]}'),
    ('{"a":{"b":"c"}}', '{"a":{"b":"d","c":null}}', '{"a":{"b":"d"}}'),
    ('{"a":[{"b":"c"}]}', '{"a":[1]}', '{"a":[1]}'),
    ('["a","b"]', '["c","d"]', '["c","d"]'),
    ('{"a":"b"}', '["c"]', '["c"]'),
    ('{"a":"foo"}', "null", "null"),
    ('{"a":"foo"}', '"bar"', '"bar"'),
    ('{"e":null}', '{"a":1}', '{"e":null,"a":1}'),
    ("[1,2]", '{"a":"b","c":null}', '{"a":"b"}'),
    ("{}", '{"a":{"bb":{"ccc":null}}}', '{"a":{"bb":{}}}'),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7386_EXAMPLES)
def test_rfc_7386_examples(target, patch, result):
    assert apply_patch(json.loads(target), json.loads(patch)) == json.loads(result)


def test_patch_does_not_mutate_its_inputs():
    target = {"a": {"b": 1}, "keep": [1]}
    patch = {"a": {"c": 2}}
    apply_patch(target, patch)
    assert target == {"a": {"b": 1}, "keep": [1]}
    assert patch == {"a": {"c": 2}}


def test_unchanged_subtrees_are_shared_not_copied():
    big = {"x": list(range(1000))}
    result = apply_patch({"big": big, "n": 1}, {"n": 2})
    assert result["big"] is big


@pytest.mark.parametrize("text", ["{", "NaN", '{"a": Infinity}', "[" * 50_000, ""])
def test_parse_json_refuses_what_is_not_strict_json(text):
    with pytest.raises(BadJson):
        parse_json(text)
