"""Token ids of prompts and answers, built through the LM's own chat template the same way for training and inference.

The placeholder appears once in the text and is expanded to `ecg_tokens` copies of its id, one per ECG embedding.
"""

from ecgllm.llm.answers import stated_regularity
from ecgllm.llm.configuration_ecgllm import ECGLLMConfig
from ecgllm.llm.prompts import answer_text, decision_sentences, user_prompt
from ecgllm.rhythm import RhythmEvidence


class ChatFormatter:
    def __init__(self, tokenizer, config: ECGLLMConfig):
        self.tokenizer = tokenizer
        self.config = config
        self.placeholder_id = tokenizer.convert_tokens_to_ids(config.placeholder)

    def _render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        # enable_thinking=False is Qwen3's switch for a direct answer; other templates ignore it.
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                                  enable_thinking=False)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _expand(self, ids: list[int]) -> list[int]:
        out = []
        for token in ids:
            out.extend([token] * self.config.ecg_tokens if token == self.placeholder_id else [token])
        return out

    def _messages(self, evidence: RhythmEvidence | None) -> list[dict]:
        system = [{"role": "system", "content": self.config.system_prompt}] if self.config.system_prompt else []
        content = user_prompt(self.config.lang, evidence if self.config.rhythm_prompt else None)
        return system + [{"role": "user", "content": content}]

    def prompt_text(self, evidence: RhythmEvidence | None) -> str:
        return self._render(self._messages(evidence), add_generation_prompt=True)

    def prompt_ids(self, evidence: RhythmEvidence | None) -> list[int]:
        return self._expand(self._ids(self.prompt_text(evidence)))

    def answer_ids(self, label: int, evidence: RhythmEvidence | None) -> list[int]:
        """The answer as the template closes an assistant turn (e.g. followed by <|im_end|>)."""
        answer = answer_text(label, self.config.lang, evidence if self.config.rhythm_prompt else None)
        prompt = self.prompt_text(evidence)
        full = self._render(self._messages(evidence) + [{"role": "assistant", "content": answer}],
                            add_generation_prompt=False)
        suffix = full[len(prompt):] if full.startswith(prompt) else answer + self.tokenizer.eos_token
        return self._ids(suffix)

    def decision_ids(self) -> tuple[list[int], ...]:
        """The task's decision sentences (normal, AF[, other, noisy]) as token ids following the prompt: what scoring
        compares."""
        return tuple(self._ids(s) for s in decision_sentences(self.config.lang, self.config.task))

    def common_start(self) -> int:
        """How many tokens every decision sentence begins with (leaving each at least one of its own): scoring runs
        them once, with the prompt."""
        sentences = self.decision_ids()
        shared = 0
        while shared < min(map(len, sentences)) - 1 and len({s[shared] for s in sentences}) == 1:
            shared += 1
        return shared

    def branch_positions(self) -> list[list[int]]:
        """For each decision sentence, the positions of its tokens that part it from another sentence with which it
        shares every earlier token: where the decision is made (with four classes "this ECG shows | is", then "shows
        normal | features | a"); the tokens between follow from them."""
        sentences = self.decision_ids()
        return [[j for j in range(len(s)) if any(o[:j] == s[:j] and o[j:j + 1] != s[j:j + 1]
                                                 for o in sentences if o is not s)]
                for s in sentences]

    def continuation_ids(self, label: int, evidence: RhythmEvidence | None) -> list[int]:
        """What the model was trained to say after decision sentence `label` (the evidence sentence and the end of the
        turn); [] where the trained answer does not tokenize as that sentence followed by the rest."""
        answer, decision = self.answer_ids(label, evidence), self.decision_ids()[label]
        return answer[len(decision):] if answer[:len(decision)] == decision else []

    def statement_ids(self, label: int, evidence: RhythmEvidence | None,
                      continuation: list[int] | None = None) -> list[int]:
        """The first tokens of the trained answer after decision sentence `label`, up to the words that say what the
        measured RR intervals are ("The RR intervals are irregular (CV"): the shortest such prefix of
        `continuation_ids` (or of `continuation`, where the caller has built it already); [] where the answer cites
        no rhythm or does not tokenize after its decision sentence."""
        if evidence is None or not self.config.rhythm_prompt:
            return []
        rest = self.continuation_ids(label, evidence) if continuation is None else continuation
        return next((rest[:k] for k in range(1, len(rest) + 1)
                     if stated_regularity(self.decode(rest[:k]), self.config.lang) == evidence.regularity), [])

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()
