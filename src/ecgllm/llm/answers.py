"""Reading generated answers: which decision an answer states about AF, and whether its numbers, and what it says of
the RR intervals, are the measured ones.

An answer is read clause by clause. A clause that mentions AF states a decision unless it is a question: a hedge
("cannot rule out", "不能排除", "possible") makes it uncertain; otherwise an odd number of negation cues before the
mention ("no", "inconsistent with", "未", "不是"; "not inconsistent with" is two) or a negation right after it ("AF is
presently not seen", "房颤已排除") makes it "no AF", and anything else affirms AF. Clauses that contradict each
other make the answer unparseable; a hedge anywhere makes it uncertain.
"""

import enum
import re

from ecgllm.llm.prompts import CITED_FIGURES, EVIDENCE_ANSWER
from ecgllm.rhythm import RhythmEvidence


class Reading(enum.Enum):
    NO_AF = "no_af"
    AF = "af"
    UNCERTAIN = "uncertain"
    UNPARSEABLE = "unparseable"

    @property
    def label(self) -> int | None:
        """1 = AF, 0 = no AF, None for an answer that decides neither."""
        return {Reading.AF: 1, Reading.NO_AF: 0}.get(self)


# A clause keeps its closing mark, so that a question can be told by its "?".
_CLAUSE = re.compile(r"[^.;:!?。；：！？，,、\n]+[.;:!?。；：！？，,、\n]*")
_QUESTION = {
    "zh": re.compile(r"是否|吗|\?|？"),
    "en": re.compile(r"^\s*(does|do|is|are|has|have|could|can)\b|\?", re.IGNORECASE),
}
_MENTION = {
    "zh": re.compile(r"心房纤维性颤动|心房纤颤|心房颤动|房颤|(?<![a-z])af(?![a-z])|atrial fibrillation", re.IGNORECASE),
    "en": re.compile(r"\b(atrial fibrillation|a-?fib|af)\b", re.IGNORECASE),
}
_HEDGE = {
    "zh": re.compile(r"(不能|无法|难以|未能)(排除|除外|确定|判断|确诊)|不(排除|除外)|待排|可能|疑似|疑为|怀疑|不确定|"
                     r"可疑|倾向"),
    "en": re.compile(r"\b(cannot|can't|can not|could not|couldn't|unable to|impossible to|not possible to)\s+(be\s+)?"
                     r"(rul(e|ed|ing)\s+out|exclud(e|ed|ing)|determine[sd]?|confirm(ed)?)|"
                     r"\bnot\s+(been\s+|be\s+)?(ruled out|excluded)|"
                     r"\b(possible|possibly|probable|probably|suspected|suspicious|may|might|could be|uncertain|"
                     r"equivocal|borderline|likely|unlikely|questionable|indeterminate)\b", re.IGNORECASE),
}
# Words that negate what follows them; "不可能" is a negation, not the hedge "可能".
_NEGATION_BEFORE = {
    "zh": re.compile(r"并非|不可能|不是|不符合|不支持|不考虑|不提示|不存在|不像|没有|没|无|未|非|排除|除外|否认|否定"),
    "en": re.compile(r"\b(no|not|without|absence of|absent|none|nor|never|lack of|lacks|free of|negative for|"
                     r"inconsistent with|rules? out|ruled out|excludes?|excluded|excluding)\b|n't\b", re.IGNORECASE),
}
_NEGATION_AFTER = {
    "zh": re.compile(r"^\W*(阴性|不成立|(已|可|被)?(排除|除外)|不存在|未见|未发现)"),
    "en": re.compile(r"^\W*((is|was|are|were|has|have|had|been|be|could|can|does|did|do|will|would|should)\s+)*"
                     r"(\w+ly\s+)?(not|no|\w+n't|cannot|absent|excluded|ruled out|negative)\b", re.IGNORECASE),
}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _read_clause(clause: str, lang: str) -> Reading | None:
    mentions = list(_MENTION[lang].finditer(clause))
    if not mentions or _QUESTION[lang].search(clause):
        return None
    if _HEDGE[lang].search(clause):
        return Reading.UNCERTAIN
    before = clause[:mentions[0].start()]
    after = clause[mentions[-1].end():]
    negated = len(_NEGATION_BEFORE[lang].findall(before)) % 2 == 1
    if _NEGATION_AFTER[lang].search(after):
        negated = not negated
    return Reading.NO_AF if negated else Reading.AF


def parse_decision(text: str, lang: str) -> Reading:
    """What the answer decides about AF."""
    text = text.replace("’", "'")
    readings = {r for r in (_read_clause(c.group(), lang) for c in _CLAUSE.finditer(text)) if r is not None}
    if not readings or {Reading.AF, Reading.NO_AF} <= readings:
        return Reading.UNPARSEABLE
    if Reading.UNCERTAIN in readings:
        return Reading.UNCERTAIN
    return readings.pop()


def cited_numbers(text: str) -> list[str]:
    return _NUMBER.findall(text)


def numbers_grounded(text: str, evidence: RhythmEvidence) -> bool:
    """True when the numbers of the answer are exactly the measured figures it should cite, in order."""
    found = cited_numbers(text)  # the decision sentences hold no digits
    if not evidence.measurable:
        return found == []
    formatted = evidence.formatted()
    return found == [formatted[name] for name in CITED_FIGURES]


def stated_regularity(text: str, lang: str) -> str | None:
    """What the answer says the RR intervals are ("regular", "irregular" or "not measurable"), read by the evidence
    sentence's own words before its figures; None when it says so in none of them, or in more than one."""
    statements = {regularity: template.split("{")[0].strip() for regularity, template in EVIDENCE_ANSWER[lang].items()}
    found = [regularity for regularity, statement in statements.items() if statement in text]
    return found[0] if len(found) == 1 else None


def regularity_grounded(text: str, lang: str, evidence: RhythmEvidence) -> bool:
    """True when the answer says of the RR intervals what the measured figures show (`RhythmEvidence.regularity`):
    a model can cite the measured CV and still call it the other word."""
    return stated_regularity(text, lang) == evidence.regularity
