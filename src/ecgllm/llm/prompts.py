"""Instructions and answers (the SPEC's Chinese verbatim, and English), rhythm evidence as text, and parsing of
generated answers: negations never count as AF, and every cited number must equal the measured one."""

import re

from ecgllm.rhythm import RhythmEvidence

LANGUAGES = ("zh", "en")
PLACEHOLDER = "<|ecg_feature|>"

INSTRUCTION = {
    "zh": "请作为一名心脏病专家，分析这段心电图信号特征。{ecg}{evidence}"
          "请判断该患者是否患有房颤（Atrial Fibrillation）？",
    "en": "As a cardiologist, analyse the features of this ECG signal. {ecg}{evidence}"
          "Does this patient have atrial fibrillation (AF)?",
}

# Class 0 (normal) and class 1 (AF): the decision sentences the model is trained on and scored with.
DECISION = {
    "zh": ("经过分析，该心电图显示为正常窦性心律，无房颤。", "经过分析，该心电图显示特征符合房颤（AF）表现，有房颤。"),
    "en": ("After analysis, this ECG shows normal sinus rhythm, no atrial fibrillation.",
           "After analysis, this ECG shows features consistent with atrial fibrillation (AF): AF is present."),
}

EVIDENCE_PROMPT = {
    "zh": "节律测量：心率 {heart_rate_bpm} 次/分，心搏 {n_beats} 个，RR 间期变异系数 {rr_cv}，RMSSD {rmssd_ms} 毫秒，"
          "pRR31 {prr31}，SD1 {sd1_ms} 毫秒，SD2 {sd2_ms} 毫秒。",
    "en": "Measured rhythm: heart rate {heart_rate_bpm} bpm, {n_beats} beats, RR coefficient of variation {rr_cv}, "
          "RMSSD {rmssd_ms} ms, pRR31 {prr31}, SD1 {sd1_ms} ms, SD2 {sd2_ms} ms. ",
}
EVIDENCE_UNMEASURABLE = {
    "zh": "节律测量：仅检出 {n_beats} 个心搏，无法测量 RR 间期。",
    "en": "Measured rhythm: only {n_beats} beats detected, RR intervals not measurable. ",
}
# The evidence sentence cites two figures: the RR coefficient of variation and the mean heart rate.
EVIDENCE_ANSWER = {
    "zh": ("RR 间期无绝对不规则（CV {rr_cv}），平均心率 {heart_rate_bpm} 次/分。",
           "RR 间期绝对不规则（CV {rr_cv}），平均心率 {heart_rate_bpm} 次/分。"),
    "en": (" The RR intervals are not irregularly irregular (CV {rr_cv}), mean heart rate {heart_rate_bpm} bpm.",
           " The RR intervals are irregularly irregular (CV {rr_cv}), mean heart rate {heart_rate_bpm} bpm."),
}
CITED_FIGURES = ("rr_cv", "heart_rate_bpm")

# Negated mentions are removed before looking for a positive one: "没有房颤" contains "有房颤".
NEGATED = {
    "zh": re.compile(r"(无|没有|未见|未发现|不符合|排除|非)\s*(房颤|心房颤动)"),
    "en": re.compile(r"\b(no|not|without|absence of|rules? out|ruled out)\s+(signs? of\s+|evidence of\s+|"
                     r"consistent with\s+|irregularly irregular\s+)?(atrial fibrillation|af)\b", re.IGNORECASE),
}
AFFIRMED = {
    "zh": re.compile(r"(有房颤|符合房颤|房颤（AF）表现|提示房颤|为房颤)"),
    "en": re.compile(r"(consistent with atrial fibrillation|af is present|atrial fibrillation is present|"
                     r"shows atrial fibrillation|indicates atrial fibrillation)", re.IGNORECASE),
}
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def check_language(lang: str) -> str:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; choose one of {LANGUAGES}")
    return lang


def evidence_text(evidence: RhythmEvidence, lang: str) -> str:
    template = EVIDENCE_PROMPT if evidence.measurable else EVIDENCE_UNMEASURABLE
    return template[lang].format(**evidence.formatted())


def user_prompt(lang: str, evidence: RhythmEvidence | None = None) -> str:
    """The instruction with the ECG placeholder (one token) and, when given, the measured rhythm."""
    extra = evidence_text(evidence, lang) if evidence is not None else ""
    separator = " " if lang == "en" and not extra else ""
    return INSTRUCTION[lang].format(ecg=PLACEHOLDER + separator, evidence=extra)


def answer_text(label: int, lang: str, evidence: RhythmEvidence | None = None) -> str:
    """The target answer: the decision sentence, then (with measurable evidence) one sentence citing it."""
    text = DECISION[lang][label]
    if evidence is not None and evidence.measurable:
        text += EVIDENCE_ANSWER[lang][label].format(**evidence.formatted())
    return text


def parse_decision(text: str, lang: str) -> int | None:
    """1 = AF, 0 = no AF, None = unparseable (no decision, or both)."""
    negated = NEGATED[lang].search(text) is not None
    affirmed = AFFIRMED[lang].search(NEGATED[lang].sub(" ", text)) is not None
    if negated == affirmed:
        return None
    return int(affirmed)


def cited_numbers(text: str) -> list[str]:
    return NUMBER.findall(text)


def numbers_grounded(text: str, evidence: RhythmEvidence, lang: str) -> bool:
    """True when the numbers of the answer are exactly the measured figures it should cite, in order."""
    found = cited_numbers(text)  # the decision sentences hold no digits
    if not evidence.measurable:
        return found == []
    formatted = evidence.formatted()
    return found == [formatted[name] for name in CITED_FIGURES]
