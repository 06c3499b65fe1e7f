"""The dev model's answers (ai_service/dev_model.py): continued or fresh (DEV_MODEL_ANSWERS)."""

from __future__ import annotations

import pytest

from ai_service.dev_markdown import MARKDOWN, chunks
from ai_service.dev_model import DevModelConfig, plan_answer, token_text
from common.config import ConfigError

PARTIAL = {
    "messages": [
        {"role": "user", "content": "go tokens=6"},
        {"role": "assistant", "content": "tok0 tok1"},
    ],
    "continue_final_message": True,
    "add_generation_prompt": False,
}


def test_a_trailing_assistant_turn_is_continued_by_default():
    plan = plan_answer(PARTIAL)
    assert (plan.start, plan.tokens, plan.generation) == (2, 6, 0)
    assert "".join(token_text(i) for i in range(plan.start, plan.tokens)) == " tok2 tok3 tok4 tok5"


def test_a_fresh_answer_ignores_the_trailing_turn_and_marks_its_generation():
    plan = plan_answer(PARTIAL, generation=2)
    assert (plan.start, plan.tokens) == (0, 6)
    text = "".join(token_text(i, plan.generation) for i in range(plan.start, plan.tokens))
    assert text == "g2tok0 g2tok1 g2tok2 g2tok3 g2tok4 g2tok5"


def test_answers_mode_is_continue_or_fresh():
    assert DevModelConfig.from_env({"DEV_MODEL_ANSWERS": "fresh"}).fresh
    assert not DevModelConfig.from_env({}).fresh
    with pytest.raises(ConfigError, match="DEV_MODEL_ANSWERS"):
        DevModelConfig.from_env({"DEV_MODEL_ANSWERS": "sometimes"})


def test_format_markdown_answers_the_markdown_document_in_word_chunks():
    body = {"messages": [{"role": "user", "content": "show me format=markdown"}]}
    plan = plan_answer(body)
    assert plan.markdown and plan.start == 0
    text = "".join(plan.chunk(i) for i in range(plan.start, plan.tokens))
    assert text == MARKDOWN.rstrip()
    assert "```python" in text and "| Layer |" in text and "## Durable sessions" in text


def test_a_partial_markdown_answer_is_continued_after_its_words():
    words = 7
    prefix = "".join(chunks()[:words])
    body = {
        "messages": [
            {"role": "user", "content": "format=markdown"},
            {"role": "assistant", "content": prefix},
        ]
    }
    plan = plan_answer(body)
    assert plan.start == words
    rest = "".join(plan.chunk(i) for i in range(plan.start, plan.tokens))
    assert prefix + rest == MARKDOWN.rstrip()


def test_other_prompts_still_answer_tok_words():
    plan = plan_answer({"messages": [{"role": "user", "content": "markdown please tokens=3"}]})
    assert not plan.markdown
    assert "".join(plan.chunk(i) for i in range(plan.tokens)) == "tok0 tok1 tok2"
