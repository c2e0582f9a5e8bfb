"""ECG-LLM: the frozen MS-CNN's features, projected into a causal LM's embedding space at the ECG placeholder.

    ECG [B, 1, 2400] -> MS-CNN feature map [B, 33, D] -> pooled to k tokens [B, k, D]        (ecg_tokens.py)
    projector input (`projector_input`, the one place it is assembled):
      tokens [B, k, D] (-> with `rhythm_input`, the record's rhythm figures beside each token [B, k, D + R])
                       (-> with `verdict_input`, the encoder's own AF logit beside each token [B, k, D (+ R) + 1])
      -> projector [B, k, H]
    prompt ids with the placeholder expanded to k copies -> embeddings, placeholder rows replaced in place -> LM + LoRA

A checkpoint holds the projector, the LoRA adapter, the encoder it was trained with, the tokenizer (with the
placeholder) and the config; never the base LM, which is loaded from `config.lm`. The decision threshold chosen on
validation lives beside them in its own file (calibration.py).
"""

import dataclasses
import hashlib
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ecgllm.encoder.modeling_mscnn import MSCNN, Encoder, load_encoder
from ecgllm.errors import CheckpointError
from ecgllm.llm.backbones import load_lm, resolve_lm
from ecgllm.llm.calibration import Calibration, log_odds_of
from ecgllm.llm.configuration_ecgllm import ECGLLMConfig
from ecgllm.llm.ecg_tokens import encode_windows
from ecgllm.modeling_utils import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    config_from_dict,
    config_text,
    load_config,
    load_weights,
    read_config,
    save_config,
)
from ecgllm.rhythm import RHYTHM_FEATURES, RhythmEvidence

logger = logging.getLogger(__name__)

PROJECTOR_NAME = "projector.safetensors"
ADAPTER_DIR = "adapter"
ENCODER_DIR = "encoder"
TOKENIZER_DIR = "tokenizer"
VERDICT_SCALE = 4.0  # the encoder's AF logits span about -8..8


# Fields the encoder's config gained after models stored fingerprints of it: left out while at these values, so that
# those models still know their encoder (none of them was built on an ensemble).
FIELDS_NEWER_THAN_FINGERPRINTS = {"members": 1}


def encoder_fingerprint(folder: Path, as_written: bool = False) -> str:
    """Identifies an encoder checkpoint: its weights and its config (which holds the preprocessing). The config counts
    as this code writes it, so an encoder saved before its config gained a field keeps its identity when a model
    re-saves it beside itself; `as_written`: the file's own bytes, what models built before this rule stored."""
    folder = Path(folder)
    if as_written:
        config = (folder / CONFIG_NAME).read_bytes()
    else:
        settings = load_config(MSCNN.config_class, folder / CONFIG_NAME, MSCNN.model_type)
        config = config_text(settings, MSCNN.model_type, omit=FIELDS_NEWER_THAN_FINGERPRINTS).encode()
    digest = hashlib.sha256((folder / WEIGHTS_NAME).read_bytes())
    digest.update(config)
    return digest.hexdigest()[:16]


def is_encoder(folder: Path, fingerprint: str) -> bool:
    """Whether the encoder in `folder` is the one a model stored `fingerprint` of."""
    return fingerprint == encoder_fingerprint(folder) or fingerprint == encoder_fingerprint(folder, as_written=True)


class ECGProjector(nn.Sequential):
    """Linear(D->H) -> LayerNorm -> GELU -> Dropout -> Linear(H->H) [-> GELU -> Dropout -> Linear(H->H)]."""

    def __init__(self, feature_dim: int, hidden_size: int, layers: int = 2, dropout: float = 0.1):
        if layers not in (2, 3):
            raise ValueError(f"projector_layers must be 2 or 3, not {layers}")
        blocks = [nn.Linear(feature_dim, hidden_size), nn.LayerNorm(hidden_size), nn.GELU(), nn.Dropout(dropout),
                  nn.Linear(hidden_size, hidden_size)]
        if layers == 3:
            blocks += [nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_size, hidden_size)]
        super().__init__(*blocks)


def with_rhythm(config: ECGLLMConfig, tokens: torch.Tensor, rhythms: list[RhythmEvidence]) -> torch.Tensor:
    """ECG tokens [N, k, D] of N recordings -> the tokens themselves, or with `rhythm_input` each token followed by
    its recording's rhythm figures [N, k, D + R], so that the RR irregularity measured on the whole recording reaches
    the model as numbers, not only as text for a small LM to read."""
    if not config.rhythm_input:
        return tokens
    if len(rhythms) != len(tokens):
        raise ValueError(f"{len(tokens)} recordings of ECG tokens but rhythm evidence for {len(rhythms)}")
    rhythm = torch.tensor([e.as_vector() for e in rhythms], dtype=tokens.dtype, device=tokens.device)  # [N, R]
    return torch.cat([tokens, rhythm[:, None].expand(-1, tokens.shape[1], -1)], dim=-1)


@torch.no_grad()
def head_logit(encoder: Encoder, tokens: torch.Tensor) -> torch.Tensor:
    """ECG tokens [B, k, D] of this encoder -> [B]: its AF logit (a four-class encoder: its class logits [B, 4]), its
    classifier head on the mean of the k tokens (the pooled feature it was trained on, exactly so for k = 1)."""
    weight = next(encoder.parameters())
    return encoder.classify(tokens.to(weight.device, weight.dtype).mean(1)).squeeze(-1)


def load_tokenizer(folder: Path, placeholder: str, add_placeholder: bool):
    """The LM's tokenizer with the ECG placeholder as one special token."""
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if add_placeholder:
        tokenizer.add_tokens([AddedToken(placeholder, special=True, normalized=False)], special_tokens=True)
    ids = tokenizer.encode(placeholder, add_special_tokens=False)
    if len(ids) != 1 or tokenizer.convert_ids_to_tokens(ids[0]) != placeholder:
        raise CheckpointError(f"{folder}: the tokenizer has no single token {placeholder!r} (it splits it into "
                              f"{len(ids)} pieces); use the tokenizer saved with the model")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def fit_embeddings(lm, tokenizer) -> None:
    """Make room for added tokens; new rows are zero so that every rebuild is identical (their inputs are replaced)."""
    rows = lm.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= rows:
        return
    lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        lm.get_input_embeddings().weight[rows:] = 0
        if lm.get_output_embeddings() is not None:
            lm.get_output_embeddings().weight[rows:] = 0


def _migrate_config(raw: dict, path: Path) -> tuple[dict, Calibration | None]:
    """Settings of a model folder written by an earlier version: `evidence` is now `rhythm_prompt`, and the validated
    threshold, once kept in config.json, is now the folder's calibration."""
    if "evidence" in raw:
        raw["rhythm_prompt"] = raw.pop("evidence")
    threshold = raw.pop("threshold", None)
    if threshold is None:
        return raw, None
    logger.info("%s: threshold %.4f read from config.json (written by an earlier version); `ecgllm llm evaluate` "
                "rewrites it as calibration.json", path, threshold)
    return raw, Calibration(log_odds_of(threshold), "validation split (kept in config.json by an earlier version)")


class ECGLLM(nn.Module):
    def __init__(self, config: ECGLLMConfig, encoder: Encoder, lm, tokenizer, calibration: Calibration | None = None):
        super().__init__()
        self.config = config
        self.encoder = encoder.eval().requires_grad_(False)
        self.lm = lm
        self.tokenizer = tokenizer
        verdict = encoder.config.num_outputs if config.verdict_input else 0  # the encoder's logit(s)
        inputs = config.feature_dim + (RHYTHM_FEATURES if config.rhythm_input else 0) + verdict
        self.projector = ECGProjector(inputs, config.hidden_size, config.projector_layers, config.projector_dropout)
        self.placeholder_id = tokenizer.convert_tokens_to_ids(config.placeholder)
        self.calibration = calibration  # the threshold chosen on validation; None until the model is evaluated

    # ---- building and loading -------------------------------------------------------------------------------------

    @classmethod
    def build(cls, config: ECGLLMConfig, encoder_dir: str | Path, seed: int = 42, device: str | torch.device = "cpu",
              lm_dtype: str | None = None) -> "ECGLLM":
        """A new model for training on `device`: the encoder from its checkpoint, the base LM, a fresh projector and
        LoRA. The new weights are drawn from `seed` alone, whatever loading the backbone did to the random state (a
        first-use conversion draws numbers that a cached backbone does not). `lm_dtype` overrides the config's for
        training only (FSDP needs one dtype in each shard); the saved config keeps the inference dtype."""
        from peft import LoraConfig, get_peft_model

        encoder_dir = Path(encoder_dir)
        encoder = load_encoder(encoder_dir).to(device)
        lm = load_lm(config.lm, lm_dtype or config.lm_dtype, device)
        tokenizer = load_tokenizer(resolve_lm(config.lm), config.placeholder, add_placeholder=True)
        fit_embeddings(lm, tokenizer)
        lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                          target_modules=list(config.lora.target_modules), task_type="CAUSAL_LM")
        config = dataclasses.replace(
            config, feature_dim=encoder.config.feature_dim, hidden_size=lm.config.hidden_size,
            encoder_preset=encoder.config.preset, encoder_fingerprint=encoder_fingerprint(encoder_dir))
        torch.manual_seed(seed)
        model = cls(config, encoder, get_peft_model(lm, lora), tokenizer)
        return model.to(device)  # the new projector (and LoRA weights) beside the rest

    def save_trainable(self, folder: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """What training changes: the projector and the LoRA adapter. The placeholder's embedding row is rebuilt
        (zeros) on load: saving the resized embeddings would write the base LM's whole vocabulary into the adapter.
        `state_dict`: this model's whole state as gathered from every process (accelerate's `get_state_dict`), which a
        sharded model needs; by default the model's own tensors."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if state_dict is None:
            projector, adapter = self.projector.state_dict(), None
        else:
            projector = {k.removeprefix("projector."): v for k, v in state_dict.items() if k.startswith("projector.")}
            adapter = {k.removeprefix("lm."): v for k, v in state_dict.items() if k.startswith("lm.") and "lora_" in k}
        save_file({k: v.detach().contiguous().cpu() for k, v in projector.items()}, str(folder / PROJECTOR_NAME))
        self.lm.save_pretrained(folder / ADAPTER_DIR, state_dict=adapter, save_embedding_layers=False)

    def load_trainable(self, folder: str | Path) -> None:
        """Projector and LoRA weights from a folder written by `save_trainable` (resuming training)."""
        from peft import set_peft_model_state_dict

        folder = Path(folder)
        set_peft_model_state_dict(self.lm, load_file(str(folder / ADAPTER_DIR / "adapter_model.safetensors")))
        load_weights(self.projector, folder / PROJECTOR_NAME)

    def save_pretrained(self, folder: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Adapter + projector (safetensors) + config + encoder + tokenizer (+ calibration); never the base LM.
        `state_dict` as for `save_trainable`."""
        folder = Path(folder)
        self.save_trainable(folder, state_dict)
        save_config(self.config, folder / CONFIG_NAME, "ecgllm")
        self.tokenizer.save_pretrained(folder / TOKENIZER_DIR)
        encoder = None if state_dict is None else \
            {k.removeprefix("encoder."): v for k, v in state_dict.items() if k.startswith("encoder.")}
        self.encoder.save_pretrained(folder / ENCODER_DIR, encoder)
        if not is_encoder(folder / ENCODER_DIR, self.config.encoder_fingerprint):
            raise CheckpointError(f"{folder / ENCODER_DIR}: the encoder changed since this model was built "
                                  f"(fingerprint {self.config.encoder_fingerprint})")
        if self.calibration is not None:
            self.calibration.save(folder)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, encoder: str | Path | None = None, lm: str | None = None,
                        device: str | torch.device = "cpu") -> "ECGLLM":
        """Load a trained model onto `device`; `encoder` and `lm` override where the encoder and the base LM are read
        from."""
        from peft import PeftModel

        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: no such model folder")
        raw, legacy_calibration = _migrate_config(read_config(folder / CONFIG_NAME, "ecgllm"), folder)
        config = config_from_dict(ECGLLMConfig, raw, str(folder / CONFIG_NAME))
        if lm is not None:
            config = dataclasses.replace(config, lm=str(lm))
        encoder_dir = Path(encoder) if encoder is not None else folder / ENCODER_DIR
        mscnn = load_encoder(encoder_dir)
        if not is_encoder(encoder_dir, config.encoder_fingerprint):
            raise CheckpointError(
                f"{encoder_dir}: encoder (preset {mscnn.config.preset!r}, fingerprint "
                f"{encoder_fingerprint(encoder_dir)}) is not the one "
                f"this model was trained with (preset {config.encoder_preset!r}, "
                f"fingerprint {config.encoder_fingerprint})")
        tokenizer = load_tokenizer(folder / TOKENIZER_DIR, config.placeholder, add_placeholder=False)
        base = load_lm(config.lm, config.lm_dtype, device)
        fit_embeddings(base, tokenizer)
        adapter = folder / ADAPTER_DIR
        if not (adapter / "adapter_config.json").is_file():
            raise CheckpointError(f"{adapter}: no LoRA adapter (adapter_config.json missing)")
        try:
            peft_lm = PeftModel.from_pretrained(base, adapter)
        except Exception as error:  # peft and safetensors raise many types for a damaged adapter
            raise CheckpointError(f"{adapter}: corrupt or mismatched LoRA adapter ({type(error).__name__}: "
                                  f"{error})") from None
        model = cls(config, mscnn, peft_lm, tokenizer, Calibration.load(folder) or legacy_calibration)
        load_weights(model.projector, folder / PROJECTOR_NAME)
        return model.to(device).eval()

    def for_inference(self) -> "ECGLLM":
        """The LoRA adapter folded into the backbone's weights and evaluation mode: the LoRA layers are then skipped
        (~20 % less time per generated token on a CPU, and ~250 fewer small kernels per step for Qwen3-8B). Evaluation
        and diagnosis both use it, so the threshold is chosen on the arithmetic that diagnosis runs (in bf16 the
        merged weights round differently). The adapter's own tensors are untouched: saving still writes them alone."""
        self.lm.merge_adapter()
        return self.eval()

    # ---- the projector's input --------------------------------------------------------------------------------------

    def encode_ecg(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 1, L] z-scored -> ECG tokens [B, k, D] from the frozen encoder (computed on its device)."""
        return encode_windows(self.encoder, x, self.config.ecg_tokens)

    def projector_input(self, tokens: torch.Tensor, rhythms: list[RhythmEvidence],
                        verdicts: torch.Tensor | None = None) -> torch.Tensor:
        """ECG tokens [N, k, D] and each recording's measured rhythm -> what the projector reads [N, k, D(+R)(+1)]:
        the tokens, then the rhythm figures (`rhythm_input`), then the encoder's verdict (`verdict_input`; `verdicts`
        [N] AF logits given instead of the encoder's own, e.g. cross-fitted ones for training records)."""
        return self.with_verdict(with_rhythm(self.config, tokens, rhythms), verdicts)

    def train(self, mode: bool = True) -> "ECGLLM":
        super().train(mode)
        self.encoder.eval()  # frozen: its BatchNorm statistics and dropout stay as trained
        return self

    def encoder_logit(self, ecg_features: torch.Tensor) -> torch.Tensor:
        """[B, k, D(+...)] -> [B] (or [B, 4]): the encoder's own logit(s) (`head_logit`)."""
        return head_logit(self.encoder, ecg_features[..., :self.config.feature_dim])

    def with_verdict(self, ecg_features: torch.Tensor, verdicts: torch.Tensor | None = None) -> torch.Tensor:
        """[B, k, D(+R)] -> [B, k, D(+R)+V]: with `verdict_input`, the encoder's AF logit (V = 1; a four-class encoder's
        class logits, V = 4), scaled to about unit range, joins every token: the encoder's own, or `verdicts` [B] (or
        [B, V]) when given."""
        if not self.config.verdict_input:
            return ecg_features
        logits = self.encoder_logit(ecg_features) if verdicts is None else verdicts
        verdict = logits.to(ecg_features).reshape(len(logits), -1) / VERDICT_SCALE  # [B, V]
        return torch.cat([ecg_features, verdict[:, None].expand(-1, ecg_features.shape[1], -1).to(ecg_features)], -1)

    # ---- the forward pass -------------------------------------------------------------------------------------------

    def embed(self, input_ids: torch.Tensor, ecg_features: torch.Tensor) -> torch.Tensor:
        """Token embeddings [B, T, H] with the k placeholder rows of each sequence replaced by its projected ECG
        tokens; `ecg_features` [B, k, D(+R)(+1)] as `projector_input` assembles them."""
        embeddings = self.lm.get_input_embeddings()(input_ids)
        ecg = self.projector(ecg_features.to(self.projector[0].weight.dtype)).to(embeddings.dtype)  # [B, k, H]
        slots = input_ids == self.placeholder_id
        if not torch.equal(slots.sum(1), torch.full_like(slots.sum(1), ecg.shape[1])):
            raise ValueError(f"every sequence needs exactly {ecg.shape[1]} placeholder tokens, found "
                             f"{slots.sum(1).tolist()}")
        return embeddings.masked_scatter(slots.unsqueeze(-1), ecg)

    def forward(self, input_ids, attention_mask, ecg_features, labels=None, label_weights=None,
                logits_to_keep: int = 0, use_cache: bool = False):
        """With `labels` (-100 outside the answers), the loss is the mean cross-entropy of the answer tokens (weighted
        by `label_weights` [B, T] where given), and only the positions from the one before the first answer token on
        go through the LM head: the head (151,936 x 4096 for Qwen3-8B) over every prompt position would cost time and
        ~0.5 GB of logits per batch for nothing."""
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # right or left padding alike
        embeddings = self.embed(input_ids, ecg_features)
        if labels is None:
            return self.lm(inputs_embeds=embeddings, attention_mask=attention_mask, position_ids=position_ids,
                           logits_to_keep=logits_to_keep, use_cache=use_cache)
        answer = labels != -100  # [B, T]
        if not answer.any():
            raise ValueError("no answer tokens in this batch: every label is -100")
        first = int(answer.int().argmax(1)[answer.any(1)].min())  # earliest answer token of the batch
        keep = labels.shape[1] - max(first, 1) + 1  # logit t predicts token t + 1
        out = self.lm(inputs_embeds=embeddings, attention_mask=attention_mask, position_ids=position_ids,
                      logits_to_keep=keep, use_cache=False)
        logits = out.logits[:, :-1].float()  # [B, keep - 1, V]: predicts tokens T - keep + 1 .. T - 1
        targets = labels[:, labels.shape[1] - keep + 1:]
        if label_weights is None:
            out.loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
            return out
        token_loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100,
                                                 reduction="none")
        weights = (label_weights[:, labels.shape[1] - keep + 1:] * (targets != -100)).flatten().to(token_loss)
        out.loss = (token_loss * weights).sum() / weights.sum()
        return out

    @property
    def device(self) -> torch.device:
        return self.projector[0].weight.device
