"""Configuration of the MS-CNN and of its training, and their presets. The checkpoint carries the former, so
stream-2's kernel cannot mismatch. Fields with a help text are also command-line flags."""

import dataclasses
from dataclasses import dataclass, field

from ecgllm.configuration_utils import check_choice, check_range, setting
from ecgllm.data.labels import TASKS, task_labels
from ecgllm.data.preprocess import AugmentConfig, PreprocessConfig


@dataclass
class MSCNNConfig:
    preset: str = "paper"
    base_widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    convs_per_block: tuple[int, ...] = (2, 2, 3, 3, 3)
    pool_sizes: tuple[int, ...] = (3, 3, 2, 2, 2)
    k_size_stream1: int = 3
    k_size_stream2: int = setting(7, "stream 2's kernel in its first blocks (5, 7 or 9 in the paper)",
                                  choices=(3, 5, 7, 9))
    large_kernel_blocks: int = 2
    width_multiplier: float = setting(1.0, "scales every conv width (the paper: 1)")
    conv_batch_norm: bool = False  # not in the paper; makes the small CPU presets train in few epochs
    head_widths: tuple[int, ...] = (1024, 256)
    dropout: float = 0.5
    task: str = "binary"  # "binary": one logit of AF; "four": a logit per CinC class (N, A, O, ~)
    members: int = 1  # MS-CNNs read as one encoder (`MSCNNEnsemble`); set by training (`EncoderTrainingConfig`)
    preprocess: PreprocessConfig = setting(help="input preprocessing", default_factory=PreprocessConfig)
    # Chosen on the validation split after training, per evaluation mode: the binary task's thresholds on P(AF), the
    # four-class task's per-class offsets on log P (evaluation.four_class.decide).
    thresholds: dict[str, float] = field(default_factory=lambda: {"center": 0.5, "whole": 0.5})
    class_offsets: dict[str, list[float]] = field(default_factory=dict)
    # What the held-out check found of those offsets, per mode: repeats, held_out_gain, kept
    # (evaluation.four_class.choose_checked_offsets); empty in checkpoints chosen before the check.
    class_offset_checks: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        check_choice("k_size_stream2", self.k_size_stream2, (3, 5, 7, 9))
        check_range("width_multiplier", self.width_multiplier, 1 / 128)
        check_choice("task", self.task, tuple(TASKS))
        check_range("members", self.members, 1)

    @property
    def num_outputs(self) -> int:
        """Logits of the head: 1 for the binary task (AF), one per class otherwise."""
        return 1 if self.task == "binary" else len(task_labels(self.task))

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(max(4, int(round(w * self.width_multiplier))) for w in self.base_widths)

    @property
    def feature_dim(self) -> int:
        """Size of `features(x)`: both streams' last width (1024 at full width), side by side for each member."""
        return 2 * self.widths[-1] * self.members

    @property
    def feature_steps(self) -> int:
        """Time steps of `feature_map(x)` (33 for 2400 samples)."""
        steps = self.preprocess.window
        for pool in self.pool_sizes:
            steps //= pool
        return steps


ENCODER_PRESETS: dict[str, MSCNNConfig] = {  # as the binary task trains them; `encoder_model_preset` per task
    # The original network at full width (≈8 min per epoch on 2 CPU cores).
    "paper": MSCNNConfig(preset="paper"),
    # Quarter width with batch norm: trains on 2 CPU cores in ~15 min (four classes: 75 Hz, 60 epochs, 50 min).
    "cpu": MSCNNConfig(preset="cpu", width_multiplier=0.25, conv_batch_norm=True, k_size_stream2=9),
    # Tiny: runs the real pipeline end to end in a minute for tests.
    "smoke": MSCNNConfig(preset="smoke", width_multiplier=1 / 16, conv_batch_norm=True, head_widths=(32, 16),
                         dropout=0.1),
}

# Chosen on validation for the four-class task, each step at the same 2400 samples and cost: 150 Hz (16-s windows)
# over 300 Hz (seed 42, challenge score 0.8304 against 0.8196; four_class_encoder_cpu_context_choice.json), again
# once trained with short crops, on whole records and their first 10 s (0.838 / 0.780 against 0.820 / 0.749;
# four_class_encoder_cpu_short_records_choice.json); then 75 Hz (32-s windows) over 150 Hz (seed 7, the mean of those
# two scores 0.793 against 0.790 and AF-vs-rest F1 0.828 against 0.818; four_class_encoder_cpu_75hz_choice.json),
# all in benchmarks/results/.
TASK_MODEL = {("cpu", "four"): {"preprocess": PreprocessConfig(fs=75.0)}}


def encoder_model_preset(preset: str, task: str) -> MSCNNConfig:
    """The `preset` MS-CNN for `task`."""
    return dataclasses.replace(ENCODER_PRESETS[preset], task=task, **TASK_MODEL.get((preset, task), {}))


BALANCES = ("oversample", "weight", "none")


@dataclass
class EncoderTrainingConfig:
    epochs: int = setting(30, "most epochs (stops earlier without a better validation score: PR AUC of AF, "
                                     "with four classes the challenge score)")
    batch_size: int = setting(32, "windows per batch")
    lr: float = setting(1e-3, "peak learning rate (one-cycle schedule)")
    weight_decay: float = setting(1e-4, "AdamW weight decay")
    patience: int = setting(8, "epochs without a better validation score before stopping")
    balance: str = setting("oversample", "oversample AF, weight the loss, or neither", choices=BALANCES)
    offset_check_repeats: int = setting(100, "four classes: validation halvings on which offsets chosen on one half "
                                             "must raise the other half's challenge score to be kept (0: unchecked)")
    ema_decay: float = setting(0.0, "per-step decay of a moving average of the weights that is validated and saved "
                                    "in their place (0: off; 0.999 averages about the last 1000 steps)")
    augment: AugmentConfig = setting(help="training augmentation", default_factory=AugmentConfig)
    seed: int = setting(42, "seed of initialisation, draws and augmentation")
    members: int = setting(1, "MS-CNNs trained on the same records, member k with seed + k, and read as one encoder: "
                              "their class probabilities averaged, their features side by side")
    max_records: int | None = setting(None, "a stratified subset per split (smoke runs)")
    eval_batch_size: int = 256

    def __post_init__(self):
        for name in ("epochs", "batch_size", "patience", "eval_batch_size"):
            check_range(name, getattr(self, name), 1)
        check_range("lr", self.lr, 0.0)
        check_range("ema_decay", self.ema_decay, 0.0, 0.9999)
        check_range("offset_check_repeats", self.offset_check_repeats, 0)
        check_range("members", self.members, 1)
        check_choice("balance", self.balance, BALANCES)
        check_range("max_records", self.max_records, 4)


TRAINING_PRESETS: dict[str, EncoderTrainingConfig] = {
    "paper": EncoderTrainingConfig(epochs=30, lr=1e-4),
    "cpu": EncoderTrainingConfig(epochs=30),
    "smoke": EncoderTrainingConfig(epochs=2, batch_size=16, max_records=48, patience=2, offset_check_repeats=10),
}
# Chosen on validation for the four-class task (seed 42, cpu: challenge score 0.8196 with 60 epochs, 0.8131 with 30;
# benchmarks/results/four_class_encoder_cpu_epochs_choice.json). No early stop: mid-schedule, with the learning rate
# still high, the score stalls for more than 8 epochs before the annealing lifts it. Short crops: a 32-s window pads
# every record under 32 s; in CinC 30 % of the noisy records are under 16 s against 4 % of the normal ones.
TASK_TRAINING = {("cpu", "four"): {"epochs": 60, "patience": 60, "augment": AugmentConfig(short_crop=0.5)}}


def encoder_training_preset(preset: str, task: str) -> EncoderTrainingConfig:
    """How the `preset` encoder is trained for `task`."""
    return dataclasses.replace(TRAINING_PRESETS[preset], **TASK_TRAINING.get((preset, task), {}))
