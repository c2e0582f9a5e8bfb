"""Scoring and generation: the log-odds of AF, log p(AF sentence) - log p(normal sentence), from the likelihood of the
two decision sentences (four-class task: log P of each class, a softmax over its four sentences' likelihoods), and
greedy generation of the whole answer (decided at a given log-odds threshold, or per-class offsets). Scores stay
log-scale (float64) everywhere a decision is made; probabilities are for showing only."""

import copy

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from ecgllm.evaluation.four_class import decide
from ecgllm.llm.chat import ChatFormatter
from ecgllm.llm.data import pad
from ecgllm.llm.modeling_ecgllm import ECGLLM
from ecgllm.rhythm import RhythmEvidence


class PrefixCache:
    """The key/value cache of the prompt tokens before the first ECG token: the system prompt and the instruction are
    the same for every record, so they run once and every batch continues from a copy of their cache. It belongs to
    the model's weights and device at the time it was made: whoever keeps one keeps it beside that model."""

    @torch.no_grad()
    def __init__(self, model: ECGLLM, formatter: ChatFormatter, prompt: list[int]):
        self.ids = prompt[:prompt.index(formatter.placeholder_id)]
        ids = torch.tensor([self.ids], device=model.device)
        self.cache = model.lm(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True).cache

    def __len__(self) -> int:
        return len(self.ids)

    def matches(self, prompts: list[list[int]]) -> bool:
        return all(p[:len(self.ids)] == self.ids for p in prompts)

    def expand(self, n: int):
        cache = copy.deepcopy(self.cache)  # the forward pass appends to the cache it is given
        cache.batch_repeat_interleave(n)
        return cache


def _decision_pass(model: ECGLLM, formatter: ChatFormatter, prompts: list[list[int]], features: torch.Tensor,
                   prefix: PrefixCache | None, keep_cache: bool):
    """The log-likelihood of each of the k decision sentences after each prompt, from the first token where they
    differ: [n, k] (normal, AF[, other, noisy]). The tokens all sentences begin with have the same likelihood under
    each and cancel in the comparison, so they run once, as part of the prompt.

    The prompts run once (left-padded, keeping their key/value cache; with `prefix`, only the part after the shared
    prefix runs); the cache is repeated k times and every sentence's remainder runs on it in one batched pass. With
    `keep_cache`, also returns what continuing after a sentence needs: the cache of that pass (rows b0 sentence 0,
    b0 sentence 1, ..., b1 sentence 0, ...), its attention mask [kn, T] and the logits that follow each sentence
    [kn, V].
    """
    if model.training:
        model.eval()
    device = model.device
    pad_id = formatter.tokenizer.pad_token_id
    n = len(prompts)
    sentences = formatter.decision_ids()
    k = len(sentences)
    shared = formatter.common_start()
    prompts = [p + sentences[0][:shared] for p in prompts]
    if prefix is not None and prefix.matches(prompts):
        ids, rest_mask = pad([p[len(prefix):] for p in prompts], pad_id, side="left")
        # Padding now sits between the prefix and the rest: the mask hides it and positions skip it.
        mask = torch.cat([torch.ones(n, len(prefix), dtype=rest_mask.dtype), rest_mask], dim=1).to(device)
        cache = prefix.expand(n)
    else:
        ids, mask = pad(prompts, pad_id, side="left")
        mask, cache = mask.to(device), None
    ids = ids.to(device)
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
    out = model.lm(inputs_embeds=model.embed(ids, features.to(device)), attention_mask=mask, position_ids=positions,
                   cache=cache, use_cache=True, logits_to_keep=1)
    first = out.logits[:, -1].float().repeat_interleave(k, 0)  # [kn, V]: predicts each sentence's first token
    cache = out.cache
    cache.batch_repeat_interleave(k)  # rows b0 x k, b1 x k, ...: each sentence's continuation of each prompt

    decision_ids, decision_mask = pad([ids[shared:] for ids in sentences], pad_id, side="right")  # [k, Ld]
    continuation = decision_ids.repeat(n, 1).to(device)  # [kn, Ld]
    continuation_mask = decision_mask.repeat(n, 1).to(device)
    mask = torch.cat([mask.repeat_interleave(k, 0), continuation_mask], dim=1)
    positions = (mask.cumsum(-1) - 1)[:, -continuation.shape[1]:]
    out = model.lm(input_ids=continuation, attention_mask=mask, position_ids=positions, cache=cache,
                   use_cache=keep_cache)
    rest = out.logits.float()  # position t predicts token t + 1
    logits = torch.cat([first.unsqueeze(1), rest[:, :-1]], dim=1)  # [kn, Ld, V]
    token_ll = torch.log_softmax(logits, -1).gather(-1, continuation.unsqueeze(-1)).squeeze(-1) * continuation_mask
    sentence_ll = token_ll.sum(-1).view(n, k)
    if not keep_cache:
        return sentence_ll
    after = rest[torch.arange(k * n, device=device), continuation_mask.sum(-1) - 1]  # [kn, V]: after each sentence
    return sentence_ll, out.cache, mask, after


def _scores(sentence_ll: torch.Tensor) -> np.ndarray:
    """[n, k] sentence log-likelihoods -> what decisions are made on: the log-odds of AF [n] for the two sentences of
    the binary task, log P of each class [n, k] (a softmax over the sentences) otherwise."""
    sentence_ll = sentence_ll.double()
    if sentence_ll.shape[1] == 2:
        return (sentence_ll[:, 1] - sentence_ll[:, 0]).cpu().numpy()
    return torch.log_softmax(sentence_ll, -1).cpu().numpy()


def decide_scores(scores: np.ndarray, rule) -> list[int]:
    """Decisions from `_scores`: log-odds at a threshold (binary task), or the class with the highest log P plus its
    offset (`rule` the per-class offsets)."""
    if scores.ndim == 1:
        return [int(v >= rule) for v in scores]
    return decide(scores, rule).tolist()


@torch.no_grad()
def decision_scores(model: ECGLLM, formatter: ChatFormatter, prompts: list[list[int]], features: torch.Tensor,
                   prefix: PrefixCache | None = None) -> np.ndarray:
    """log p(AF sentence | prompt) - log p(normal sentence | prompt) of each prompt [n] (four-class task: log P of
    each class [n, 4]), float64."""
    return _scores(_decision_pass(model, formatter, prompts, features, prefix, keep_cache=False))


def _end_tokens(tokenizer) -> list[int]:
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return [t for t in {tokenizer.eos_token_id, end_of_turn} if t is not None and t != tokenizer.unk_token_id]


def _verify_drafts(model: ECGLLM, drafts: list[list[int]], cache, mask: torch.Tensor, logits: torch.Tensor,
                   pad_id: int):
    """Greedy decoding of many tokens in one pass, where a guess of them exists (speculative decoding with greedy
    verification: the output is what token-by-token greedy decoding gives).

    `logits` [n, V] predict each row's next token and `drafts` guess the tokens from there on. All draft tokens run
    at once; a row keeps its draft up to the first token that differs from the model's own argmax, and the model's
    token there. The cache keeps the rejected tokens' entries, hidden by the attention mask (zeros in the mask are
    padding to the model), so no row is recomputed. Returns each row's accepted tokens, the mask and the cache to
    continue from, and the logits [n, V] that predict the token after them.
    """
    n, device = len(drafts), mask.device
    draft, draft_mask, predicted, cache, mask = _run_tokens(model, drafts, cache, mask, logits, pad_id)
    agree = (predicted[:, :-1].argmax(-1) == draft) & draft_mask.bool()
    accepted = agree.long().cumprod(-1).sum(-1)  # [n]: draft tokens equal to greedy decoding's
    kept = torch.arange(draft.shape[1], device=device)[None] < accepted[:, None]
    mask = torch.cat([mask[:, :-draft.shape[1]], kept.long()], dim=1)
    tokens = [draft[r, :accepted[r]].tolist() for r in range(n)]
    return tokens, cache, mask, predicted[torch.arange(n, device=device), accepted]


def _feed(model: ECGLLM, tokens: list[list[int]], cache, mask: torch.Tensor, logits: torch.Tensor, pad_id: int):
    """Each row's `tokens` taken as written (not the model's choice), all in one pass: returns the cache, mask and
    logits [n, V] to continue from, as `_verify_drafts` does when every token is kept."""
    _, token_mask, predicted, cache, mask = _run_tokens(model, tokens, cache, mask, logits, pad_id)
    lengths = token_mask.sum(-1)
    return cache, mask, predicted[torch.arange(len(tokens), device=mask.device), lengths]


def _run_tokens(model: ECGLLM, tokens: list[list[int]], cache, mask: torch.Tensor, logits: torch.Tensor, pad_id: int):
    """Run each row's `tokens` after its cache at once, right-padded (padding hidden by the mask). Returns the tokens
    [n, L] and their mask, the logits [n, L + 1, V] (column i predicts token i; column 0 is `logits`), the cache and
    the mask with the tokens' entries."""
    device = mask.device
    ids, token_mask = pad(tokens, pad_id, side="right")  # [n, L]
    ids, token_mask = ids.to(device), token_mask.to(device)
    mask = torch.cat([mask, token_mask], dim=1)
    positions = (mask.cumsum(-1) - 1)[:, -ids.shape[1]:]
    out = model.lm(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
    predicted = torch.cat([logits[:, None], out.logits.float()], dim=1)
    return ids, token_mask, predicted, out.cache, mask


@torch.no_grad()
def score_and_answer(model: ECGLLM, formatter: ChatFormatter, prompts: list[list[int]], features: torch.Tensor,
                     rule, max_new_tokens: int = 48, decisions: list[int] | None = None,
                     prefix: PrefixCache | None = None, evidence: list[RhythmEvidence | None] | None = None,
                     state_rhythm: bool = False) -> tuple[np.ndarray, list[int], list[str]]:
    """The scores, the decision, and the rest of the answer, from one pass over each prompt: the decision is the
    sentence `rule` picks (a log-odds threshold, or per-class offsets: `decide_scores`; or `decisions`, when the
    caller decided otherwise), and the
    answer goes on greedily from the key/value cache of prompt + that sentence, never running the prompt again.
    With each prompt's `evidence`, the answer the model was trained to give after its decision serves as a draft:
    its tokens are verified many at a time (`_verify_drafts`), from its start and, after the model departs from it,
    from where the model's last tokens appear in it again (`_follow_draft`); the answer is still the greedy one.
    With `state_rhythm` as well, the words that say what the measured RR intervals are (`ChatFormatter.statement_ids`)
    follow the decision sentence as it does, chosen by the stated cut-off and not by the model, which writes the rest.
    Returns the scores (`decision_scores`), decisions (class indices) and the generated continuations (after the
    decision sentence)."""
    sentence_ll, cache, mask, after = _decision_pass(model, formatter, prompts, features, prefix, keep_cache=True)
    scores = _scores(sentence_ll)
    if decisions is None:
        decisions = decide_scores(scores, rule)
    k = sentence_ll.shape[1]
    rows = torch.arange(len(prompts), device=mask.device) * k + torch.tensor(decisions, device=mask.device)
    cache.batch_select_indices(rows)
    mask, logits = mask[rows], after[rows]
    ends = _end_tokens(formatter.tokenizer)
    pad_id = formatter.tokenizer.pad_token_id
    drafts = None if evidence is None else [_until_end(formatter.continuation_ids(d, e), ends)
                                            for d, e in zip(decisions, evidence)]
    generated = [[] for _ in prompts]
    if state_rhythm:
        generated = [formatter.statement_ids(d, e, draft) for d, e, draft in zip(decisions, evidence, drafts)]
        if any(generated):
            cache, mask, logits = _feed(model, generated, cache, mask, logits, pad_id)

    def finished(row: int) -> bool:
        return len(generated[row]) >= max_new_tokens or bool(set(generated[row]) & set(ends))

    while not all(finished(r) for r in range(len(prompts))):
        if drafts is not None:
            guesses = [[] if finished(r) else _follow_draft(generated[r], drafts[r])[:max_new_tokens - len(g)]
                       for r, g in enumerate(generated)]
            if any(guesses):
                accepted, cache, mask, logits = _verify_drafts(model, guesses, cache, mask, logits, pad_id)
                for row, tokens in enumerate(accepted):
                    generated[row] += _until_end(tokens, ends)
        done = torch.tensor([finished(r) for r in range(len(prompts))], device=mask.device)
        if done.all():
            break
        token = logits.argmax(-1).masked_fill(done, pad_id)  # [n]: the model's own next token
        for row in (~done).nonzero().flatten().tolist():
            generated[row].append(int(token[row]))
        done = torch.tensor([finished(r) for r in range(len(prompts))], device=mask.device)
        if done.all():
            break
        mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
        out = model.lm(input_ids=token[:, None], attention_mask=mask, position_ids=mask.sum(-1, keepdim=True) - 1,
                       cache=cache, use_cache=True)
        cache, logits = out.cache, out.logits[:, -1].float()
    return scores, decisions, [formatter.decode(row) for row in generated]


def _follow_draft(generated: list[int], draft: list[int]) -> list[int]:
    """What the draft says next: all of it before anything is generated; afterwards, what follows the first place in
    the draft that holds the last two generated tokens, or nothing (one token matches too easily to be worth a pass).
    """
    if not generated:
        return draft
    if len(generated) < 2:
        return []
    tail = generated[-2:]
    for start in range(len(draft) - 1):
        if draft[start:start + 2] == tail:
            return draft[start + 2:]
    return []


def _until_end(ids: list[int], ends: list[int]) -> list[int]:
    """`ids` up to and including the first end-of-turn token: greedy decoding stops there."""
    stop = next((i for i, t in enumerate(ids) if t in ends), len(ids) - 1)
    return ids[:stop + 1]


class DecisionBias(LogitsProcessor):
    """Puts greedy decoding at the validated operating point.

    Scoring says AF when log p(AF sentence) - log p(normal sentence) >= `threshold` (log-odds). Where the two
    decision sentences part, the AF branch's first token is lowered by that threshold, so that generation decides at
    the same operating point instead of at log-odds 0. Only that one position is touched; everything else is plain
    greedy decoding.
    """

    def __init__(self, normal_ids: list[int], af_ids: list[int], threshold: float):
        self.split = next(i for i, (a, b) in enumerate(zip(normal_ids, af_ids)) if a != b)
        self.prefix = torch.tensor(normal_ids[:self.split])
        self.af_token = af_ids[self.split]
        self.bias = float(threshold)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        # With inputs_embeds, input_ids holds only the generated tokens.
        if input_ids.shape[1] == self.split:
            on_prefix = (input_ids == self.prefix.to(input_ids.device)).all(dim=1)
            scores[on_prefix, self.af_token] -= self.bias
        return scores


@torch.no_grad()
def generate_answers(model: ECGLLM, formatter: ChatFormatter, prompts: list[list[int]], features: torch.Tensor,
                     max_new_tokens: int = 64, threshold: float | None = None) -> list[str]:
    """Greedy decoding of the full answer; with `threshold` (log-odds), decided at that operating point (see
    DecisionBias)."""
    model.eval()
    tokenizer = formatter.tokenizer
    ids, mask = pad(prompts, tokenizer.pad_token_id, side="left")
    embeddings = model.embed(ids.to(model.device), features.to(model.device))
    # Binary task only: the four-class evaluation decodes with score_and_answer.
    processors = LogitsProcessorList([DecisionBias(*formatter.decision_ids(), threshold)] if threshold is not None
                                     else [])
    out = model.lm.generate(inputs_embeds=embeddings, attention_mask=mask.to(model.device),
                            max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=_end_tokens(tokenizer), temperature=None, top_p=None, top_k=None,
                            logits_processor=processors)
    return [formatter.decode(row) for row in out]


def score_batched(model: ECGLLM, formatter: ChatFormatter, prompts: list[list[int]], features: torch.Tensor,
                  batch_size: int = 16, prefix: PrefixCache | None = None) -> np.ndarray:
    """The scores (`decision_scores`) of each (prompt, projector input) pair, batch by batch, continuing from
    `prefix` where it matches."""
    return np.concatenate([decision_scores(model, formatter, prompts[i:i + batch_size], features[i:i + batch_size],
                                          prefix) for i in range(0, len(prompts), batch_size)])
