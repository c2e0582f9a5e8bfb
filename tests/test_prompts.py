import re

import pytest

from ecgllm.llm.answers import Reading, numbers_grounded, parse_decision, regularity_grounded
from ecgllm.llm.prompts import DECISION, PLACEHOLDER, answer_text, user_prompt
from ecgllm.rhythm import IRREGULAR_RR_CV, RhythmEvidence

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
        assert parse_decision(answer, lang).label == label
        assert numbers_grounded(answer, EVIDENCE)


# What an answer says of the RR intervals, and the CV it cites, read from its text alone.
_REGULARITY = {"en": re.compile(r"The RR intervals are (regular|irregular) \(CV (\d+\.\d+)\)|(Too few beats)"),
               "zh": re.compile(r"RR 间期(规则|不规则)（CV (\d+\.\d+)）|(检出心搏过少)")}


def stated_regularity(answer: str, lang: str) -> tuple[str, float | None]:
    match = _REGULARITY[lang].search(answer)
    assert match, answer
    if match.group(3):
        return "not measurable", None
    return ("irregular" if match.group(1) in ("irregular", "不规则") else "regular"), float(match.group(2))


def contradicts(answer: str, lang: str) -> bool:
    word, cv = stated_regularity(answer, lang)
    return cv is not None and (word == "irregular") != (cv >= IRREGULAR_RR_CV)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_evidence_sentence_follows_the_figures_not_the_label(lang):
    regular = RhythmEvidence(n_beats=38, heart_rate_bpm=76, rr_cv=0.03, rmssd_ms=22, prr31=0.1, sd1_ms=16, sd2_ms=40)
    few = RhythmEvidence(n_beats=3)
    for label in (0, 1):
        assert stated_regularity(answer_text(label, lang, EVIDENCE), lang) == ("irregular", 0.21)
        assert stated_regularity(answer_text(label, lang, regular), lang) == ("regular", 0.03)
        assert stated_regularity(answer_text(label, lang, few), lang) == ("not measurable", None)
        assert numbers_grounded(answer_text(label, lang, few), few)
        # the label changes the decision sentence only
        assert answer_text(label, lang, regular)[len(DECISION[lang][label]):] == \
            answer_text(1 - label, lang, regular)[len(DECISION[lang][1 - label]):]
    at_cut = RhythmEvidence(n_beats=30, heart_rate_bpm=70, rr_cv=IRREGULAR_RR_CV, rmssd_ms=60, prr31=0.4, sd1_ms=40,
                            sd2_ms=60)
    assert stated_regularity(answer_text(0, lang, at_cut), lang)[0] == "irregular"
    # the check can fail: the label-chosen wording of earlier versions
    assert contradicts(DECISION["en"][0] + " The RR intervals are irregular (CV 0.05), mean heart rate 70 bpm.", "en")


def test_no_training_answer_contradicts_its_figures(cinc_dir):
    """Every training record of the binary split (seed 42), both languages: the regularity word the answer states
    agrees with the CV it cites, read from the text alone; both labels meet both wordings."""
    from ecgllm.data.dataset import load_cinc_folder
    from ecgllm.data.split import make_split
    from ecgllm.rhythm import measure_rhythm

    dataset = load_cinc_folder(cinc_dir, progress=False)
    train = make_split(dataset.labels, "binary", 42).train
    seen = set()
    for record in train:
        evidence = measure_rhythm(dataset.records[record].signal, dataset.records[record].fs)
        label = dataset.labels[record]
        for lang in ("zh", "en"):
            answer = answer_text(label, lang, evidence)
            assert not contradicts(answer, lang), (record, answer)
            assert numbers_grounded(answer, evidence)
        seen.add((label, stated_regularity(answer, "en")[0]))
    assert len(train) == 4340
    assert {(0, "regular"), (0, "irregular"), (1, "regular"), (1, "irregular")} <= seen


NO, AF, UNCERTAIN, NONE = Reading.NO_AF, Reading.AF, Reading.UNCERTAIN, Reading.UNPARSEABLE


@pytest.mark.parametrize("text, lang, expected", [
    # the training sentences
    ("经过分析，该心电图显示为正常窦性心律，无房颤。", "zh", NO),
    ("经过分析，该心电图显示特征符合房颤（AF）表现，有房颤。", "zh", AF),
    (DECISION["en"][0], "en", NO),
    (DECISION["en"][1], "en", AF),
    # negated (the first ones were read as AF, or not at all, by an earlier parser)
    ("未提示房颤。", "zh", NO),
    ("未有房颤。", "zh", NO),
    ("未见明显房颤。", "zh", NO),
    ("不是房颤。", "zh", NO),
    ("该患者没有房颤。", "zh", NO),
    ("未见房颤表现", "zh", NO),
    ("排除房颤。", "zh", NO),
    ("房颤已排除。", "zh", NO),
    ("心电图为窦性心律，不符合心房颤动。", "zh", NO),
    ("The rhythm is inconsistent with atrial fibrillation.", "en", NO),
    ("AF is presently not seen.", "en", NO),
    ("AF is not present.", "en", NO),
    ("Atrial fibrillation is absent.", "en", NO),
    ("There is no atrial fibrillation.", "en", NO),
    ("Not consistent with atrial fibrillation.", "en", NO),
    ("This ECG rules out AF.", "en", NO),
    ("The patient doesn't have atrial fibrillation.", "en", NO),
    ("Sinus rhythm without signs of AF.", "en", NO),
    ("Negative for atrial fibrillation.", "en", NO),
    ("AF could not be detected.", "en", NO),
    ("AF isn’t present.", "en", NO),
    # double negated: the negations cancel
    ("并非没有房颤。", "zh", AF),
    ("The ECG is not inconsistent with atrial fibrillation.", "en", AF),
    ("It is not true that there is no AF.", "en", AF),
    # hedged: its own outcome
    ("不能排除房颤。", "zh", UNCERTAIN),
    ("不排除房颤。", "zh", UNCERTAIN),
    ("无法排除房颤。", "zh", UNCERTAIN),
    ("疑似房颤，建议复查。", "zh", UNCERTAIN),
    ("Cannot rule out atrial fibrillation.", "en", UNCERTAIN),
    ("Atrial fibrillation cannot be excluded.", "en", UNCERTAIN),
    ("AF has not been ruled out.", "en", UNCERTAIN),
    ("Possible atrial fibrillation; please repeat the recording.", "en", UNCERTAIN),
    ("No clear AF, but paroxysmal AF may be present.", "en", UNCERTAIN),
    # affirmed
    ("心电图提示房颤。", "zh", AF),
    ("有房颤。", "zh", AF),
    ("诊断：心房颤动。", "zh", AF),
    ("The ECG is consistent with atrial fibrillation.", "en", AF),
    ("Atrial fibrillation is present, with a fast ventricular response.", "en", AF),
    ("Findings: AF.", "en", AF),
    # no decision, a question, or both
    ("心电图显示窦性心律。", "zh", NONE),
    ("请判断该患者是否患有房颤？", "zh", NONE),
    ("有房颤，无房颤。", "zh", NONE),
    ("Sinus rhythm.", "en", NONE),
    ("Does this patient have atrial fibrillation (AF)?", "en", NONE),
    ("AF is present. There is no atrial fibrillation.", "en", NONE),
    ("", "en", NONE),
])
def test_parse_decision_reads_negations_and_hedges(text, lang, expected):
    assert parse_decision(text, lang) is expected


def test_grounding_detects_wrong_or_extra_numbers():
    good = answer_text(1, "en", EVIDENCE)
    assert numbers_grounded(good, EVIDENCE)
    assert not numbers_grounded(good.replace("0.21", "0.12"), EVIDENCE)
    assert not numbers_grounded(good.replace("112 bpm", "112 bpm, 45 beats"), EVIDENCE)
    assert not numbers_grounded(DECISION["en"][1], EVIDENCE)  # cites nothing
    assert numbers_grounded(DECISION["en"][1], RhythmEvidence(n_beats=2))


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_grounding_reads_the_word_for_the_rr_intervals(lang):
    """The regularity word is checked on its own: a model can cite the measured CV and call it the other word (as
    the 75 Hz four-class model does on LUDB: "irregular (CV 0.02)" after "another rhythm")."""
    regular = RhythmEvidence(n_beats=12, heart_rate_bpm=61, rr_cv=0.02, rmssd_ms=20, prr31=0.0, sd1_ms=14, sd2_ms=18)
    few = RhythmEvidence(n_beats=2)
    for label in range(4):
        for evidence in (EVIDENCE, regular, few):
            assert regularity_grounded(answer_text(label, lang, evidence), lang, evidence)
        swapped = answer_text(label, lang, regular).replace(*{"en": ("are regular", "are irregular"),
                                                             "zh": ("间期规则", "间期不规则")}[lang])
        assert numbers_grounded(swapped, regular) and not regularity_grounded(swapped, lang, regular)
        assert not regularity_grounded(answer_text(label, lang, regular), lang, EVIDENCE)
        assert not regularity_grounded(answer_text(label, lang, few), lang, regular)
        assert not regularity_grounded(DECISION[lang][label], lang, regular)  # says nothing of the RR intervals
    # both words at once say nothing either way
    assert not regularity_grounded(answer_text(0, lang, regular) + answer_text(0, lang, EVIDENCE), lang, regular)
