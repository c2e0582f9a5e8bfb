"""Instructions and answers: the SPEC's Chinese verbatim, and English, with the measured rhythm as text. Reading
generated answers is `answers.py`."""

from ecgllm.data.labels import task_labels
from ecgllm.rhythm import RhythmEvidence

LANGUAGES = ("zh", "en")
PLACEHOLDER = "<|ecg_feature|>"

INSTRUCTION = {
    "zh": "请作为一名心脏病专家，分析这段心电图信号特征。{ecg}{evidence}"
          "请判断该患者是否患有房颤（Atrial Fibrillation）？",
    "en": "As a cardiologist, analyse the features of this ECG signal. {ecg}{evidence}"
          "Does this patient have atrial fibrillation (AF)?",
}

# The decision sentences the model is trained on and scored with, by class: normal, AF, another rhythm, too noisy.
# The binary task uses the first two.
DECISION = {
    "zh": ("经过分析，该心电图显示为正常窦性心律，无房颤。", "经过分析，该心电图显示特征符合房颤（AF）表现，有房颤。",
           "经过分析，该心电图显示为其他心律，非房颤。", "经过分析，该心电图噪声过大，无法判断，请重新记录。"),
    "en": ("After analysis, this ECG shows normal sinus rhythm, no atrial fibrillation.",
           "After analysis, this ECG shows features consistent with atrial fibrillation (AF): AF is present.",
           "After analysis, this ECG shows a rhythm other than normal sinus rhythm, no atrial fibrillation.",
           "After analysis, this ECG is too noisy to judge: please record it again."),
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
# The evidence sentence says what the measured RR figures show (RhythmEvidence.regularity, by the stated cut-off on
# the RR coefficient of variation), not what the label is: the decision sentence carries the decision. It cites two
# figures, the RR coefficient of variation and the mean heart rate; with too few beats it cites none.
EVIDENCE_ANSWER = {
    "zh": {"regular": "RR 间期规则（CV {rr_cv}），平均心率 {heart_rate_bpm} 次/分。",
           "irregular": "RR 间期不规则（CV {rr_cv}），平均心率 {heart_rate_bpm} 次/分。",
           "not measurable": "检出心搏过少，RR 间期无法测量。"},
    "en": {"regular": " The RR intervals are regular (CV {rr_cv}), mean heart rate {heart_rate_bpm} bpm.",
           "irregular": " The RR intervals are irregular (CV {rr_cv}), mean heart rate {heart_rate_bpm} bpm.",
           "not measurable": " Too few beats were detected to measure the RR intervals."},
}
CITED_FIGURES = ("rr_cv", "heart_rate_bpm")


def check_language(lang: str) -> str:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; choose one of {LANGUAGES}")
    return lang


def decision_sentences(lang: str, task: str) -> tuple[str, ...]:
    """The task's decision sentences, by class index."""
    return DECISION[lang][:len(task_labels(task))]


def evidence_text(evidence: RhythmEvidence, lang: str) -> str:
    template = EVIDENCE_PROMPT if evidence.measurable else EVIDENCE_UNMEASURABLE
    return template[lang].format(**evidence.formatted())


def user_prompt(lang: str, evidence: RhythmEvidence | None = None) -> str:
    """The instruction with the ECG placeholder (one token) and, when given, the measured rhythm."""
    extra = evidence_text(evidence, lang) if evidence is not None else ""
    separator = " " if lang == "en" and not extra else ""
    return INSTRUCTION[lang].format(ecg=PLACEHOLDER + separator, evidence=extra)


def answer_text(label: int, lang: str, evidence: RhythmEvidence | None = None) -> str:
    """The target answer: the decision sentence, then (with evidence) the sentence saying what the figures show."""
    text = DECISION[lang][label]
    if evidence is not None:
        text += EVIDENCE_ANSWER[lang][evidence.regularity].format(**evidence.formatted())
    return text
