"""Configuration of the ECG-LLM and its presets (`cpu`, `qwen3-8b`, `smoke`)."""

from dataclasses import dataclass, field

from ecgllm.llm.backbones import SMOLLM2, TINY_QWEN3
from ecgllm.llm.prompts import PLACEHOLDER

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoRASettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = LORA_TARGETS


@dataclass
class ECGLLMConfig:
    preset: str = "cpu"
    lm: str = SMOLLM2  # a backbone name (see backbones.py) or a local Hugging Face folder
    lm_dtype: str = "float32"  # "bfloat16" for Qwen3-8B on a GPU
    ecg_tokens: int = 1  # 1 = the original's pooled feature; k > 1 = k tokens pooled from the feature map
    ecg_input: str = "center"  # the SPEC's centre 8-s crop, or "whole": tokens averaged over the record's windows
    projector_layers: int = 2  # SPEC: Linear -> LayerNorm -> GELU -> Dropout -> Linear; 3 adds one more block
    projector_dropout: float = 0.1
    lora: LoRASettings = field(default_factory=LoRASettings)
    lang: str = "zh"
    evidence: bool = True  # rhythm figures in the prompt and one answer sentence citing them; off = the original
    rhythm_input: bool = False  # the same figures also as numbers beside each ECG token at the projector's input
    verdict_input: bool = False  # the encoder's own AF logit also joins each ECG token at the projector's input
    placeholder: str = PLACEHOLDER
    system_prompt: str | None = None  # None keeps the template's default (SmolLM2 then adds its own, Qwen3 none)
    # Filled in when the model is built: what the projector maps from and to, and which encoder produced the features.
    feature_dim: int = 0
    hidden_size: int = 0
    encoder_preset: str = ""
    encoder_fingerprint: str = ""
    # Decision threshold on P(AF) from scoring, chosen on the validation split after training.
    threshold: float = 0.5


@dataclass
class LLMTrainingConfig:
    epochs: int = 3
    batch_size: int = 4
    gradient_accumulation_steps: int = 4
    lr: float = 1e-4
    warmup_steps: int = 100
    schedule: str = "linear"  # or "cosine"
    weight_decay: float = 0.0
    bf16: bool = True  # used where the device supports it
    gradient_checkpointing: bool = False
    balance: str = "none"  # or "oversample" AF to balanced classes
    samples_per_epoch: int | None = None  # with oversampling: draws per epoch (default: the number of records)
    # Gaussian noise on the encoder's features while training, in units of each feature's spread over the training
    # records (the rhythm figures stay exact). The encoder was fitted on these records, so their features separate
    # AF far better than those of records it never saw; noise keeps the LM from trusting them more than it should.
    feature_noise: float = 0.0
    max_train_records: int | None = None  # a stratified subset, for smoke and quick runs
    max_eval_records: int | None = None
    eval_batch_size: int = 16
    max_new_tokens: int = 64
    seed: int = 42


LLM_PRESETS: dict[str, tuple[ECGLLMConfig, LLMTrainingConfig]] = {
    # The original setting on Qwen3-8B (pass its local folder with --lm); SPEC hyper-parameters, bf16.
    "qwen3-8b": (ECGLLMConfig(preset="qwen3-8b", lm="Qwen3-8B", lm_dtype="bfloat16", ecg_tokens=4, lang="zh"),
                 LLMTrainingConfig()),
    # SmolLM2-135M on 2 CPU cores: English (about half the tokens of Chinese for this tokenizer), one ECG token
    # averaged over the record's 8-s windows; beside it at the projector's input the rhythm figures (also in the
    # prompt) and the encoder's own AF logit. One pass over 1200 class-balanced draws (about 20 min). Chosen on
    # validation (F1 0.917, ROC AUC 0.992, PR AUC 0.968; without the verdict 0.916 / 0.988 / 0.957). A short system
    # prompt replaces SmolLM2's default.
    "cpu": (ECGLLMConfig(preset="cpu", lm=SMOLLM2, ecg_tokens=1, ecg_input="whole", rhythm_input=True,
                         verdict_input=True, lang="en", system_prompt="You are a cardiologist."),
            LLMTrainingConfig(epochs=1, batch_size=8, gradient_accumulation_steps=2, lr=3e-4, warmup_steps=10,
                              schedule="cosine", balance="oversample", samples_per_epoch=1200, eval_batch_size=16,
                              max_new_tokens=48)),
    # Tiny random Qwen3 with the real Qwen3 tokenizer: the whole path in seconds.
    "smoke": (ECGLLMConfig(preset="smoke", lm=TINY_QWEN3, ecg_tokens=2, lang="zh", rhythm_input=True,
                           verdict_input=True, lora=LoRASettings(r=4, alpha=8)),
              LLMTrainingConfig(epochs=3, batch_size=4, gradient_accumulation_steps=1, lr=5e-3, warmup_steps=2,
                                max_train_records=24, max_eval_records=16, eval_batch_size=8, max_new_tokens=24)),
}
