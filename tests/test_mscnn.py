import dataclasses
import json

import pytest
import torch

from ecgllm.encoder import ENCODER_PRESETS, MSCNN, MSCNNEnsemble, load_encoder
from ecgllm.encoder.configuration_mscnn import TRAINING_PRESETS, encoder_model_preset, encoder_training_preset
from ecgllm.errors import CheckpointError


def test_paper_architecture_matches_the_spec():
    model = MSCNN(ENCODER_PRESETS["paper"])
    x = torch.randn(2, 1, 2400)
    assert model.features(x).shape == (2, 1024)
    assert model.feature_map(x).shape == (2, 33, 1024)
    assert model(x).shape == (2,)
    for stream, first_kernel in ((model.stream1, 3), (model.stream2, 7)):
        convs = [m for m in stream.modules() if isinstance(m, torch.nn.Conv1d)]
        assert [c.out_channels for c in convs] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6
        assert [c.kernel_size[0] for c in convs] == [first_kernel] * 4 + [3] * 9
        pools = [m.kernel_size for m in stream.modules() if isinstance(m, torch.nn.MaxPool1d)]
        assert pools == [3, 3, 2, 2, 2]
    linears = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1024, 1024), (1024, 256), (256, 1)]


@pytest.mark.parametrize("preset", ["cpu", "smoke"])
def test_presets_give_consistent_shapes(preset):
    config = ENCODER_PRESETS[preset]
    model = MSCNN(config).eval()
    x = torch.randn(3, 1, 2400)
    assert model.feature_map(x).shape == (3, config.feature_steps, config.feature_dim)
    assert torch.allclose(model.features(x), model.feature_map(x).mean(1))


def test_the_four_class_cpu_encoder_trains_its_validated_schedule_and_the_binary_one_keeps_the_spec_s():
    assert (encoder_training_preset("cpu", "four").epochs, encoder_training_preset("cpu", "four").patience) == (60, 60)
    assert encoder_training_preset("cpu", "binary") == TRAINING_PRESETS["cpu"]
    assert (TRAINING_PRESETS["cpu"].epochs, TRAINING_PRESETS["cpu"].patience) == (30, 8)
    assert encoder_training_preset("smoke", "four") == TRAINING_PRESETS["smoke"]


def test_the_four_class_cpu_encoder_sees_its_validated_32_s_windows_and_the_binary_one_the_spec_s_8_s():
    four, binary = encoder_model_preset("cpu", "four"), encoder_model_preset("cpu", "binary")
    assert (four.task, four.preprocess.fs, four.preprocess.window) == ("four", 75.0, 2400)  # 32 s
    assert binary == dataclasses.replace(ENCODER_PRESETS["cpu"], task="binary") and binary.preprocess.fs == 300.0
    assert encoder_model_preset("smoke", "four").preprocess.fs == 300.0
    assert ENCODER_PRESETS["cpu"].preprocess.fs == 300.0  # the preset itself is untouched


def test_save_and_load_needs_only_the_path(tmp_path):
    config = dataclasses.replace(ENCODER_PRESETS["smoke"], k_size_stream2=9, thresholds={"center": 0.3, "whole": 0.4})
    model = MSCNN(config).eval()
    model.save_pretrained(tmp_path)
    loaded = MSCNN.from_pretrained(tmp_path)
    assert loaded.config == config
    x = torch.randn(2, 1, 2400)
    assert torch.equal(model(x), loaded(x))


@pytest.mark.parametrize("task", ["four", "binary"])
def test_an_ensemble_averages_its_members_probabilities_and_reads_their_features_side_by_side(task, tmp_path):
    torch.manual_seed(0)
    config = dataclasses.replace(encoder_model_preset("smoke", task), members=3)
    ensemble = MSCNNEnsemble(config).eval()
    x = torch.randn(4, 1, 2400)
    with torch.no_grad():
        members = [member(x) for member in ensemble.members]
        assert ensemble.feature_map(x).shape == (4, config.feature_steps, config.feature_dim)
        assert config.feature_dim == 3 * ENCODER_PRESETS["smoke"].feature_dim
        assert torch.equal(ensemble.feature_map(x)[..., :config.feature_dim // 3], ensemble.members[0].feature_map(x))
        if task == "four":
            expected = torch.stack([m.softmax(-1) for m in members]).mean(0)
            torch.testing.assert_close(ensemble(x).softmax(-1), expected)
        else:
            torch.testing.assert_close(ensemble(x).sigmoid(), torch.stack([m.sigmoid() for m in members]).mean(0))
        assert not torch.allclose(members[0], members[1])  # members drawn apart

    ensemble.save_pretrained(tmp_path)
    loaded = load_encoder(tmp_path)
    assert isinstance(loaded, MSCNNEnsemble) and loaded.config == config
    assert torch.equal(loaded(x), ensemble(x))
    with pytest.raises(ValueError, match="3 members make an MSCNNEnsemble"):
        MSCNN.from_pretrained(tmp_path)
    single = MSCNN(ENCODER_PRESETS["smoke"])
    single.save_pretrained(tmp_path / "single")
    assert type(load_encoder(tmp_path / "single")) is MSCNN


def test_bad_checkpoints(tmp_path):
    MSCNN(ENCODER_PRESETS["smoke"]).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="corrupt weights"):
        MSCNN.from_pretrained(tmp_path)
    MSCNN(ENCODER_PRESETS["cpu"]).save_pretrained(tmp_path / "cpu")
    (tmp_path / "cpu" / "config.json").write_text((tmp_path / "config.json").read_text())
    with pytest.raises(CheckpointError, match="do not fit"):
        MSCNN.from_pretrained(tmp_path / "cpu")
    raw = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**raw, "model_type": "llama"}))
    with pytest.raises(CheckpointError, match="expected 'mscnn'"):
        MSCNN.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="no such model folder"):
        MSCNN.from_pretrained(tmp_path / "absent")


def test_an_encoder_at_another_rate_reads_records_resampled_to_it(small_cinc, tmp_path, monkeypatch):
    """`--preprocess-fs 150 --preprocess-window 3000`: each window spans 20 s of a 300 Hz CinC record, in training,
    evaluation and the ECG tokens an LLM is trained on."""
    from ecgllm.cli import main
    from ecgllm.data import Split, load_cinc_folder
    from ecgllm.encoder import evaluate, training
    from ecgllm.llm.ecg_tokens import encode_records
    from ecgllm.llm.features import cached_features

    dataset = load_cinc_folder(small_cinc, progress=False)
    recorded = {len(r.signal) for r in dataset.records.values()}
    seen = {}  # lengths of the signals each stage handed to the network

    def spy(module, name, key):
        original = getattr(module, name)

        def recording(model_or_signals, *args, **kwargs):
            signals = args[0] if isinstance(model_or_signals, MSCNN) else model_or_signals
            seen.setdefault(key, set()).update(len(s) for s in signals)
            return original(model_or_signals, *args, **kwargs)
        monkeypatch.setattr(module, name, recording)

    spy(training, "RandomCropDataset", "training crops")
    spy(training, "predict_records", "validation")
    spy(evaluate, "predict_records", "evaluation")
    split_path, folder = tmp_path / "split.json", tmp_path / "encoder"
    assert main(["-q", "data", "split", str(small_cinc), "--out", str(split_path)]) == 0
    assert main(["-q", "encoder", "train", "--data", str(small_cinc), "--split", str(split_path), "--out", str(folder),
                 "--preset", "smoke", "--preprocess-fs", "150", "--preprocess-window", "3000"]) == 0
    assert main(["-q", "encoder", "evaluate", "--model", str(folder), "--data", str(small_cinc), "--split",
                 str(split_path)]) == 0
    model = MSCNN.from_pretrained(folder)
    assert (model.config.preprocess.fs, model.config.preprocess.window) == (150, 3000)
    assert model.feature_map(torch.zeros(1, 1, 3000)).shape[1] == model.config.feature_steps == 41
    assert set(seen) == {"training crops", "validation", "evaluation"}
    assert all(lengths <= {n // 2 for n in recorded} for lengths in seen.values()), seen
    seen.clear()  # --max-seconds: each record's first 10 s, as a device that records 10 s
    assert main(["-q", "encoder", "evaluate", "--model", str(folder), "--data", str(small_cinc), "--split",
                 str(split_path), "--max-seconds", "10"]) == 0
    assert max(seen["evaluation"]) == 1500, seen
    assert json.loads((folder / "eval_10s" / "metrics.json").read_text())["max_seconds"] == 10

    ids = Split.load(split_path).test
    assert dataset.signals(ids, 300)[0] is dataset.records[ids[0]].signal  # the recorded rate: no copy
    tokens = cached_features(model, "fs150", dataset, ids, 1, tmp_path / "cache", "whole", progress=False)
    torch.testing.assert_close(torch.stack([tokens[i] for i in ids]),
                               encode_records(model, dataset.signals(ids, 150), 1, "whole"))


def test_with_ema_decay_the_moving_average_is_validated_and_saved(small_cinc, tmp_path):
    """At a decay of 0.9999 the average of 18 steps stays next to the first step's weights, so the saved encoder sits
    far closer to the initial weights than the weights the same training saves without the average."""
    from ecgllm.cli import main
    from ecgllm.data import Split, load_cinc_folder
    from ecgllm.encoder.training import train_encoder
    from ecgllm.utils import seed_everything

    dataset = load_cinc_folder(small_cinc, progress=False)
    split_path = tmp_path / "split.json"
    assert main(["-q", "data", "split", str(small_cinc), "--out", str(split_path)]) == 0
    config = encoder_model_preset("smoke", "binary")
    settings = dataclasses.replace(encoder_training_preset("smoke", "binary"), epochs=6, patience=6)
    seed_everything(settings.seed)
    initial = MSCNN(config).state_dict()

    def distance_from_initial(ema_decay: float) -> float:
        trained = train_encoder(dataset, Split.load(split_path), tmp_path / f"ema_{ema_decay}", config,
                                dataclasses.replace(settings, ema_decay=ema_decay), progress=False, device="cpu")
        weights = {name: w.detach() for name, w in trained.named_parameters()}
        return sum(float((weights[name] - initial[name]).norm()) for name in weights)

    plain, averaged = distance_from_initial(0.0), distance_from_initial(0.9999)
    assert averaged < 0.2 * plain, (averaged, plain)
    saved = json.loads((tmp_path / "ema_0.9999" / "training_config.json").read_text())
    assert saved["ema_decay"] == 0.9999


def test_stopped_encoder_training_resumes_as_if_never_stopped(small_cinc_four, tmp_path, monkeypatch, caplog):
    """Stopped during epoch 3 of 3 (here at its validation) and run again, a four-class training with a moving average
    resumes after epoch 2 and saves the weights, decision rule and history of a training that never stopped; a
    checkpoint of other settings is refused, naming the file."""
    import csv
    import logging

    from safetensors.torch import load_file

    from ecgllm.data import load_cinc_folder, make_split
    from ecgllm.encoder import training

    dataset = load_cinc_folder(small_cinc_four, progress=False)
    split = make_split(dataset.labels, "four")
    config = encoder_model_preset("smoke", "four")
    settings = dataclasses.replace(encoder_training_preset("smoke", "four"), epochs=3, patience=3, ema_decay=0.99)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    training.train_encoder(dataset, split, straight, config, settings, progress=False, device="cpu")

    validated = []

    def stop_at_third_validation(*args, **kwargs):
        validated.append(1)
        if len(validated) == 3:
            raise KeyboardInterrupt
        return predict(*args, **kwargs)

    predict = training.predict_records
    monkeypatch.setattr(training, "predict_records", stop_at_third_validation)
    with pytest.raises(KeyboardInterrupt):
        training.train_encoder(dataset, split, resumed, config, settings, progress=False, device="cpu")
    monkeypatch.setattr(training, "predict_records", predict)
    assert (resumed / training.CHECKPOINT_NAME).exists() and not (resumed / "model.safetensors").exists()

    with pytest.raises(CheckpointError, match=f"{resumed / training.CHECKPOINT_NAME}.*other config"):
        training.train_encoder(dataset, split, resumed, config, dataclasses.replace(settings, lr=2e-3),
                               progress=False, device="cpu")
    caplog.set_level(logging.INFO)
    training.train_encoder(dataset, split, resumed, config, settings, progress=False, device="cpu")
    assert "resuming after epoch 2 of 3" in caplog.text
    assert not (resumed / training.CHECKPOINT_NAME).exists()
    a, b = (load_file(str(run / "model.safetensors")) for run in (resumed, straight))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((resumed / "config.json").read_text()) == json.loads((straight / "config.json").read_text())
    rows = [[row[:5] for row in csv.reader((run / training.HISTORY_NAME).open())] for run in (resumed, straight)]
    assert rows[0] == rows[1] and len(rows[0]) == 4  # header and three epochs: losses and validation figures


def test_an_ensemble_trains_member_k_as_one_encoder_of_seed_k_and_reads_finished_members_back(small_cinc_four, tmp_path,
                                                                                               caplog):
    """Member 0 of a two-member ensemble is the encoder a single training of the same seed saves, member 1 another
    (seed + 1); the ensemble chooses its own decision rule on validation; run again, it retrains no member, and a member
    of other settings is refused, naming its folder."""
    import logging

    from safetensors.torch import load_file

    from ecgllm.data import load_cinc_folder, make_split
    from ecgllm.encoder import training

    dataset = load_cinc_folder(small_cinc_four, progress=False)
    split = make_split(dataset.labels, "four")
    config = encoder_model_preset("smoke", "four")
    settings = dataclasses.replace(encoder_training_preset("smoke", "four"), epochs=2, patience=2)
    training.train_encoder(dataset, split, tmp_path / "single", config, settings, progress=False, device="cpu")
    ensemble = training.train_encoder(dataset, split, tmp_path / "ensemble", config,
                                      dataclasses.replace(settings, members=2), progress=False, device="cpu")
    assert isinstance(ensemble, MSCNNEnsemble) and ensemble.config.members == 2
    members = tmp_path / "ensemble" / training.MEMBERS_DIR
    member_files = [load_file(str(members / str(k) / "model.safetensors")) for k in range(2)]
    single_file = load_file(str(tmp_path / "single" / "model.safetensors"))
    assert all(torch.equal(member_files[0][k], single_file[k]) for k in single_file)
    assert not torch.equal(member_files[1]["head.0.weight"], single_file["head.0.weight"])
    saved = load_file(str(tmp_path / "ensemble" / "model.safetensors"))
    assert all(torch.equal(saved[f"members.{k}.{name}"], member_files[k][name]) for k in range(2)
               for name in single_file)
    member_settings = json.loads((members / "1" / "training_config.json").read_text())
    assert (member_settings["seed"], member_settings["members"]) == (settings.seed + 1, 1)
    saved_config = json.loads((tmp_path / "ensemble" / "config.json").read_text())
    assert saved_config["members"] == 2 and saved_config["class_offset_checks"]["whole"]["repeats"] == 10

    (tmp_path / "ensemble" / "model.safetensors").unlink()
    caplog.set_level(logging.INFO)
    again = training.train_encoder(dataset, split, tmp_path / "ensemble", config,
                                   dataclasses.replace(settings, members=2), progress=False, device="cpu")
    assert caplog.text.count("reusing ensemble member") == 2 and "training MS-CNN" not in caplog.text
    assert again.config == ensemble.config
    (tmp_path / "ensemble" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=f"{members / '0'}: a member trained with other settings"):
        training.train_encoder(dataset, split, tmp_path / "ensemble", config,
                               dataclasses.replace(settings, members=2, lr=2e-3), progress=False, device="cpu")
