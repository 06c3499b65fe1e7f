"""The dev model's answers (ai_service/dev_model.py): continued or fresh (DEV_MODEL_ANSWERS)."""

from __future__ import annotations

import pytest

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
