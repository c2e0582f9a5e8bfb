import pytest

from ecgllm.llm.prompts import DECISION, PLACEHOLDER, answer_text, numbers_grounded, parse_decision, user_prompt
from ecgllm.rhythm import RhythmEvidence

EVIDENCE = RhythmEvidence(n_beats=45, heart_rate_bpm=112, rr_cv=0.21, rmssd_ms=152, prr31=0.78, sd1_ms=108, sd2_ms=130)


def test_original_texts_verbatim():
    assert user_prompt("zh") == ("请作为一名心脏病专家，分析这段心电图信号特征。<|ecg_feature|>"
                                 "请判断该患者是否患有房颤（Atrial Fibrillation）？")
    assert answer_text(0, "zh") == "经过分析，该心电图显示为正常窦性心律，无房颤。"
    assert answer_text(1, "zh") == "经过分析，该心电图显示特征符合房颤（AF）表现，有房颤。"
    assert user_prompt("en").count(PLACEHOLDER) == 1


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_evidence_in_prompt_and_answer(lang):
    prompt = user_prompt(lang, EVIDENCE)
    for figure in ("112", "45", "0.21", "152", "0.78", "108", "130"):
        assert figure in prompt
    for label in (0, 1):
        answer = answer_text(label, lang, EVIDENCE)
        assert answer.startswith(DECISION[lang][label])
        assert parse_decision(answer, lang) == label
        assert numbers_grounded(answer, EVIDENCE, lang)


@pytest.mark.parametrize("text, lang, expected", [
    ("经过分析，该心电图显示为正常窦性心律，无房颤。", "zh", 0),
    ("该患者没有房颤。", "zh", 0),  # the original counted this as AF
    ("未见房颤表现", "zh", 0),
    ("心电图提示房颤。", "zh", 1),
    ("有房颤。", "zh", 1),
    ("心电图显示窦性心律。", "zh", None),
    ("有房颤，无房颤。", "zh", None),
    ("There is no atrial fibrillation.", "en", 0),
    ("Not consistent with atrial fibrillation.", "en", 0),
    ("The ECG is consistent with atrial fibrillation.", "en", 1),
    ("Sinus rhythm.", "en", None),
])
def test_parse_decision_never_counts_negations(text, lang, expected):
    assert parse_decision(text, lang) == expected


def test_grounding_detects_wrong_or_extra_numbers():
    good = answer_text(1, "en", EVIDENCE)
    assert numbers_grounded(good, EVIDENCE, "en")
    assert not numbers_grounded(good.replace("0.21", "0.12"), EVIDENCE, "en")
    assert not numbers_grounded(good.replace("112 bpm", "112 bpm, 45 beats"), EVIDENCE, "en")
    assert not numbers_grounded(DECISION["en"][1], EVIDENCE, "en")  # cites nothing
    assert numbers_grounded(DECISION["en"][1], RhythmEvidence(n_beats=2), "en")
