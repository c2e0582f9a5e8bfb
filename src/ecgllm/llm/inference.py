"""P(AF) by scoring the two decision sentences, and free greedy generation of the whole answer."""

import numpy as np
import torch

from ecgllm.llm.chat import ChatFormatter
from ecgllm.llm.data import pad
from ecgllm.llm.modeling_ecgllm import ECGLLM


@torch.no_grad()
def score_af(model: ECGLLM, formatter: ChatFormatter, prompts: list[list[int]], features: torch.Tensor
             ) -> np.ndarray:
    """P(AF) = sigmoid(log p(AF sentence | prompt) - log p(normal sentence | prompt)), one forward pass for both.

    Prompts are left-padded so that the decision tokens of every row sit in the same last positions; only those
    positions' logits are computed.
    """
    model.eval()
    device = model.device
    decisions = formatter.decision_ids()
    n = len(prompts)
    prompt_ids, prompt_mask = pad(prompts, formatter.tokenizer.pad_token_id, side="left")
    decision_ids, decision_mask = pad(list(decisions), formatter.tokenizer.pad_token_id, side="right")  # [2, Ld]
    length = decision_ids.shape[1]
    # Rows 0..n-1 continue with the normal sentence, rows n..2n-1 with the AF sentence.
    input_ids = torch.cat([prompt_ids.repeat(2, 1), decision_ids.repeat_interleave(n, 0)], dim=1).to(device)
    mask = torch.cat([prompt_mask.repeat(2, 1), decision_mask.repeat_interleave(n, 0)], dim=1).to(device)
    out = model(input_ids, mask, features.repeat(2, 1, 1).to(device), logits_to_keep=length + 1)
    log_probs = torch.log_softmax(out.logits[:, :length].float(), dim=-1)  # position t predicts decision token t
    targets = input_ids[:, -length:]
    token_ll = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask[:, -length:]
    sentence_ll = token_ll.sum(-1)
    return torch.sigmoid(sentence_ll[n:] - sentence_ll[:n]).cpu().numpy()


@torch.no_grad()
def generate_answers(model: ECGLLM, formatter: ChatFormatter, prompts: list[list[int]], features: torch.Tensor,
                     max_new_tokens: int = 64) -> list[str]:
    """Greedy decoding of the full answer, nothing forced."""
    model.eval()
    tokenizer = formatter.tokenizer
    ids, mask = pad(prompts, tokenizer.pad_token_id, side="left")
    embeddings = model.embed(ids.to(model.device), features.to(model.device))
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = [t for t in {tokenizer.eos_token_id, end_of_turn} if t is not None and t != tokenizer.unk_token_id]
    out = model.lm.generate(inputs_embeds=embeddings, attention_mask=mask.to(model.device),
                            max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=eos, temperature=None, top_p=None, top_k=None)
    return [formatter.decode(row) for row in out]
