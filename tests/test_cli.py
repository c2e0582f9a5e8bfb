"""The command line: flags made from the configuration dataclasses, each subcommand with only the settings it uses,
and bad settings refused with a one-line error before anything runs."""

import dataclasses

import pytest

from ecgllm.cli import build_parser, main
from ecgllm.configuration_utils import given_settings, override
from ecgllm.errors import SettingError
from ecgllm.llm.configuration_ecgllm import (
    LLM_PRESETS,
    ECGLLMConfig,
    LLMEvaluationConfig,
    LLMTrainingConfig,
    llm_training_preset,
)

TRAIN = ["llm", "train", "--data", "d", "--split", "s.json", "--encoder", "e", "--out", "o"]


def test_the_four_class_cpu_llm_trains_on_its_validated_draws_and_the_binary_one_as_measured():
    assert llm_training_preset("cpu", "four").samples_per_epoch == 2400
    assert llm_training_preset("cpu", "binary") == LLM_PRESETS["cpu"][1]
    assert LLM_PRESETS["cpu"][1].samples_per_epoch == 1200
    assert llm_training_preset("smoke", "four") == LLM_PRESETS["smoke"][1]


def test_flags_override_only_what_is_given():
    args = build_parser().parse_args([*TRAIN, "--preset", "cpu", "--ecg-tokens", "4", "--no-rhythm-input",
                                      "--lora-r", "8", "--lr", "2e-4", "--eval-batch-size", "4"])
    model_config, train_config, _ = LLM_PRESETS["cpu"]
    model = override(model_config, given_settings(args, ECGLLMConfig))
    assert model.ecg_tokens == 4 and not model.rhythm_input
    assert model.lora.r == 8 and model.lora.alpha == 16  # alpha follows the rank when only the rank is given
    assert model.lang == model_config.lang == "en" and model.verdict_input  # not given: the preset's
    training = override(train_config, given_settings(args, LLMTrainingConfig))
    assert training.lr == 2e-4 and training.samples_per_epoch == train_config.samples_per_epoch
    assert given_settings(args, LLMEvaluationConfig, "eval-") == {"batch_size": 4}
    assert model_config.ecg_tokens == 1  # the preset itself is untouched
    both = build_parser().parse_args([*TRAIN, "--lora-r", "8", "--lora-alpha", "8"])
    assert override(model_config, given_settings(both, ECGLLMConfig)).lora.alpha == 8


def test_evaluate_has_no_training_flags(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["llm", "evaluate", "--model", "m", "--data", "d", "--split", "s",
                                   "--lora-r", "8"])
    assert "unrecognized arguments: --lora-r 8" in capsys.readouterr().err
    args = build_parser().parse_args(["llm", "evaluate", "--model", "m", "--data", "d", "--split", "s",
                                      "--batch-size", "2", "--no-generate"])
    assert given_settings(args, LLMEvaluationConfig) == {"batch_size": 2, "generate": False}


@pytest.mark.parametrize("flags, message", [
    (["--ecg-tokens", "0"], "ecg_tokens must be at least 1"),
    (["--feature-noise", "-1"], "feature_noise must be at least 0.0"),
    (["--lora-r", "0"], "lora r must be at least 1"),
])
def test_bad_settings_are_one_line_errors(flags, message, capsys):
    assert main(["-q", *TRAIN, *flags]) == 2
    assert f"error: {message}" in capsys.readouterr().err


def test_bad_encoder_settings_fail_before_the_split_or_data_are_read(capsys):
    assert main(["-q", "encoder", "train", "--data", "d", "--split", "s.json", "--out", "o", "--epochs", "0"]) == 2
    assert "error: epochs must be at least 1" in capsys.readouterr().err


def test_configs_validate_themselves():
    with pytest.raises(SettingError, match="lang must be one of zh, en, not 'fr'"):
        ECGLLMConfig(lang="fr")
    with pytest.raises(SettingError, match="schedule must be one of linear, cosine"):
        dataclasses.replace(LLM_PRESETS["cpu"][1], schedule="step")


def test_a_model_is_evaluated_only_on_a_split_of_its_own_task(small_cinc, tmp_path, capsys):
    import dataclasses

    from ecgllm.encoder import ENCODER_PRESETS, MSCNN

    split = tmp_path / "binary.json"
    assert main(["-q", "data", "split", str(small_cinc), "--out", str(split)]) == 0
    MSCNN(dataclasses.replace(ENCODER_PRESETS["smoke"], task="four")).save_pretrained(tmp_path / "enc")
    assert main(["-q", "encoder", "evaluate", "--model", str(tmp_path / "enc"), "--data", str(small_cinc), "--split",
                 str(split)]) == 2
    assert "four task, but this split is of the 'binary' task" in capsys.readouterr().err
