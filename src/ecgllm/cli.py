"""The `ecgllm` command: a thin layer over the Python API."""

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from ecgllm import __version__
from ecgllm.errors import ECGLLMError, SettingError

logger = logging.getLogger("ecgllm")


def _data_check(args) -> int:
    from ecgllm.data.dataset import check_folder

    print(check_folder(args.dir, progress=not args.quiet).report())
    return 0


def _data_split(args) -> int:
    from ecgllm.data.dataset import load_cinc_folder
    from ecgllm.data.split import make_split

    dataset = load_cinc_folder(args.dir, task=args.task, progress=not args.quiet)
    split = make_split(dataset.labels, args.task, args.seed)
    split.save(args.out)
    print(f"{args.out}: {split.summary()}")
    return 0


def _data_download(args) -> int:
    from ecgllm.data.download import PHYSIONET_URL, download_cinc2017

    folder = download_cinc2017(args.out, args.url or PHYSIONET_URL, args.sha256, progress=not args.quiet)
    print(f"data ready in {folder}")
    return 0


def _encoder_train(args) -> int:
    from ecgllm.data.dataset import load_cinc_folder
    from ecgllm.data.split import Split
    from ecgllm.encoder.configuration_mscnn import ENCODER_PRESETS
    from ecgllm.encoder.training import TRAINING_PRESETS, train_encoder

    model_config = ENCODER_PRESETS[args.preset]
    if args.k_size_stream2 is not None:
        model_config = dataclasses.replace(model_config, k_size_stream2=args.k_size_stream2)
    if args.width_multiplier is not None:
        model_config = dataclasses.replace(model_config, width_multiplier=args.width_multiplier)
    overrides = {k: v for k, v in {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                                    "balance": args.balance, "seed": args.seed}.items() if v is not None}
    train_config = dataclasses.replace(TRAINING_PRESETS[args.preset], **overrides)
    split = Split.load(args.split)
    dataset = load_cinc_folder(args.data, task=split.task, progress=not args.quiet)
    train_encoder(dataset, split, args.out, model_config, train_config, progress=not args.quiet)
    return 0


def _encoder_evaluate(args) -> int:
    from ecgllm.data.dataset import load_cinc_folder
    from ecgllm.data.split import Split
    from ecgllm.encoder.evaluate import evaluate_encoder, format_encoder_result
    from ecgllm.encoder.modeling_mscnn import MSCNN

    model = MSCNN.from_pretrained(args.model)
    if args.stride is not None:
        model.config.preprocess.stride = args.stride
    split = Split.load(args.split)
    dataset = load_cinc_folder(args.data, task=split.task, progress=not args.quiet)
    out = args.out or Path(args.model) / "eval"
    result = evaluate_encoder(model, dataset, split, out, args.split_name, progress=not args.quiet)
    print(format_encoder_result(result))
    print(f"written to {out}")
    return 0


def _llm_configs(args):
    from ecgllm.llm.configuration_ecgllm import LLM_PRESETS

    model_config, train_config = LLM_PRESETS[args.preset]
    model_overrides = {"lm": args.lm, "ecg_tokens": args.ecg_tokens, "ecg_input": args.ecg_input, "lang": args.lang,
                       "evidence": args.evidence, "rhythm_input": args.rhythm_input,
                       "verdict_input": args.verdict_input,
                       "projector_layers": args.projector_layers}
    model_config = dataclasses.replace(model_config, **{k: v for k, v in model_overrides.items() if v is not None})
    if args.lora_r is not None:
        model_config.lora = dataclasses.replace(model_config.lora, r=args.lora_r, alpha=2 * args.lora_r)
    train_overrides = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                       "gradient_accumulation_steps": args.gradient_accumulation_steps, "schedule": args.schedule,
                       "warmup_steps": args.warmup_steps, "samples_per_epoch": args.samples_per_epoch,
                       "gradient_checkpointing": args.gradient_checkpointing or None,
                       "feature_noise": args.feature_noise, "max_train_records": args.max_train_records,
                       "seed": args.seed}
    train_config = dataclasses.replace(train_config, **{k: v for k, v in train_overrides.items() if v is not None})
    return model_config, train_config


def _llm_train(args) -> int:
    from ecgllm.data.dataset import load_cinc_folder
    from ecgllm.data.split import Split
    from ecgllm.llm.training import train_llm

    model_config, train_config = _llm_configs(args)
    split = Split.load(args.split)
    dataset = load_cinc_folder(args.data, task=split.task, progress=not args.quiet)
    final = train_llm(dataset, split, args.encoder, args.out, model_config, train_config, args.cache,
                      progress=not args.quiet)
    print(f"trained model in {final}")
    if args.evaluate:
        _evaluate_llm(final, dataset, split, args, train_config)
    return 0


def _evaluate_llm(model_dir, dataset, split, args, train_config) -> None:
    from ecgllm.llm.evaluate import format_llm_result
    from ecgllm.pipeline import evaluate_llm_folder

    out = args.eval_out or Path(model_dir).parent / "eval"
    cache = args.cache or Path(model_dir).parent / "cache"
    result = evaluate_llm_folder(Path(model_dir), dataset, split, out, cache, args.encoder_eval,
                                 train_config.eval_batch_size, train_config.max_new_tokens,
                                 train_config.max_eval_records, progress=not args.quiet)
    print(format_llm_result(result))
    print(f"written to {out}")


def _llm_evaluate(args) -> int:
    from ecgllm.data.dataset import load_cinc_folder
    from ecgllm.data.split import Split

    _, train_config = _llm_configs(args)
    split = Split.load(args.split)
    dataset = load_cinc_folder(args.data, task=split.task, progress=not args.quiet)
    _evaluate_llm(args.model, dataset, split, args, train_config)
    return 0


def _diagnose(args) -> int:
    import csv
    import json

    from ecgllm.data.readers import expand_inputs, read_recording
    from ecgllm.errors import RecordError
    from ecgllm.inference.diagnose import MIN_SECONDS, diagnose
    from ecgllm.llm.modeling_ecgllm import ECGLLM
    from ecgllm.pipeline import resolve_model_dir
    from ecgllm.utils import resolve_device

    model = ECGLLM.from_pretrained(resolve_model_dir(args.model)).to(resolve_device(args.device))
    paths = list(args.paths)
    if args.examples:
        from ecgllm.examples import example_records

        paths += [e["path"].with_suffix(".hea") for e in example_records().values()]
    if not paths:
        raise SettingError("nothing to diagnose: give files or folders, or --examples")
    results, failures = [], []
    for path in expand_inputs(paths):
        try:
            recording = read_recording(path, args.fs, args.lead, args.gain, min_seconds=MIN_SECONDS)
            result = diagnose(model, recording.signal, recording.fs, recording.name)
        except RecordError as error:
            failures.append({"file": str(path), "error": error.reason})
            print(f"error: {error}", file=sys.stderr)
            continue
        results.append(result.to_dict())
        if args.plots:
            from ecgllm.plots.ecg import plot_ecg_strip, plot_rr

            args.plots.mkdir(parents=True, exist_ok=True)
            windows = [vars(w) for w in result.windows]
            plot_ecg_strip(recording.signal, recording.fs, args.plots / f"{result.record}_strip.png",
                           result.r_peaks_s, windows, result.threshold, result.record)
            plot_rr(result.r_peaks_s, args.plots / f"{result.record}_rr.png", result.record)
        if not args.json:
            verdict = "AF" if result.af else "no AF"
            answer = result.answer if args.lang in (None, result.lang) else \
                f"{result.translations[args.lang]} [template translation of the model's answer]"
            print(f"{path}: P(AF) {result.p_af:.3f} (threshold {result.threshold:.3f}) -> {verdict}\n  {answer}")
    if args.json:
        print(json.dumps({"results": results, "failures": failures}, indent=2, ensure_ascii=False))
    if args.csv:
        with args.csv.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["record", "seconds", "p_af", "threshold", "af", "answer", "error"])
            for r in results:
                writer.writerow([r["record"], r["seconds"], f"{r['p_af']:.6f}", r["threshold"], int(r["af"]),
                                 r["answer"], ""])
            for f in failures:
                writer.writerow([f["file"], "", "", "", "", "", f["error"]])
    return 1 if failures and not results else 0


def _evaluate_external(args) -> int:
    from ecgllm.evaluation.external import ExternalConfig, evaluate_external, format_external
    from ecgllm.llm.modeling_ecgllm import ECGLLM
    from ecgllm.pipeline import resolve_model_dir
    from ecgllm.utils import resolve_device

    model_dir = resolve_model_dir(args.model)
    model = ECGLLM.from_pretrained(model_dir).to(resolve_device(args.device))
    config = ExternalConfig(annotator=args.annotator, af_rhythms=tuple(args.af_rhythms.split(",")),
                            min_af_share=args.min_af_share, lead=args.lead, batch_size=args.batch_size)
    out = args.out or model_dir.parent / f"external_{args.wfdb.resolve().name}"
    print(format_external(evaluate_external(model, args.wfdb, out, config, progress=not args.quiet)))
    print(f"written to {out}")
    return 0


def _serve(args) -> int:
    import uvicorn

    from ecgllm.llm.modeling_ecgllm import ECGLLM
    from ecgllm.pipeline import resolve_model_dir
    from ecgllm.serving.app import ServeLimits, create_app
    from ecgllm.utils import resolve_device

    model = ECGLLM.from_pretrained(resolve_model_dir(args.model)).to(resolve_device(args.device))
    limits = ServeLimits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_seconds=args.max_seconds)
    print(f"serving on http://{args.host}:{args.port}/ (API documentation: /docs)", flush=True)
    uvicorn.run(create_app(model, limits), host=args.host, port=args.port,
                log_level="warning" if args.quiet else "info")
    return 0


def _report(args) -> int:
    from ecgllm.evaluation.report import write_report

    path = write_report(args.run, args.out, args.data, args.llm_name, args.examples)
    print(f"report written to {path}")
    return 0


def _run(args) -> int:
    from ecgllm.pipeline import run

    run(args.data, args.out, args.preset, args.seed, args.lm, progress=not args.quiet)
    return 0


def _add_llm_options(parser) -> None:
    parser.add_argument("--preset", default="cpu", choices=["smoke", "cpu", "qwen3-8b"])
    parser.add_argument("--lm", help="backbone name or local Hugging Face folder (e.g. /models/Qwen3-8B)")
    parser.add_argument("--ecg-tokens", type=int, help="1 = the original's pooled feature; k > 1 from the map")
    parser.add_argument("--ecg-input", choices=["center", "whole"],
                        help="ECG tokens of the centre 8-s crop (SPEC) or averaged over the whole record's windows")
    parser.add_argument("--lang", choices=["zh", "en"])
    parser.add_argument("--evidence", action=argparse.BooleanOptionalAction, default=None,
                        help="rhythm figures in the prompt and cited in the answer (--no-evidence: the original)")
    parser.add_argument("--rhythm-input", action=argparse.BooleanOptionalAction, default=None,
                        help="the rhythm figures also as numbers beside each ECG token at the projector's input")
    parser.add_argument("--verdict-input", action=argparse.BooleanOptionalAction, default=None,
                        help="the encoder's own AF logit also beside each ECG token at the projector's input")
    parser.add_argument("--projector-layers", type=int, choices=[2, 3])
    parser.add_argument("--lora-r", type=int, help="LoRA rank (alpha = 2 r)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--gradient-accumulation-steps", type=int)
    parser.add_argument("--schedule", choices=["linear", "cosine"])
    parser.add_argument("--warmup-steps", type=int)
    parser.add_argument("--samples-per-epoch", type=int)
    parser.add_argument("--feature-noise", type=float,
                        help="Gaussian noise on the encoder features while training, in units of their spread")
    parser.add_argument("--max-train-records", type=int)
    parser.add_argument("--seed", type=int, help="seed of the LLM's initialisation and draws (default 42)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--cache", type=Path, help="feature/rhythm cache folder (default: beside the output)")
    parser.add_argument("--encoder-eval", type=Path, help="Task 1 eval folder to compare with (predictions.csv)")
    parser.add_argument("--eval-out", type=Path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecgllm", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ecgllm {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="check, split or download a CinC 2017 folder").add_subparsers(
        dest="data_command", required=True)
    check = data.add_parser("check", help="load every record and list the bad ones")
    check.add_argument("dir", type=Path)
    check.set_defaults(func=_data_check)
    split = data.add_parser("split", help="stratified 75/10/15 split saved as record ids")
    split.add_argument("dir", type=Path)
    split.add_argument("--out", type=Path, required=True)
    split.add_argument("--task", default="binary", choices=["binary", "four"])
    split.add_argument("--seed", type=int, default=42)
    split.set_defaults(func=_data_split)
    download = data.add_parser("download", help="fetch training2017.zip from PhysioNet and unpack it")
    download.add_argument("--out", type=Path, required=True)
    download.add_argument("--url", help="where training2017.zip lives (default: PhysioNet)")
    download.add_argument("--sha256", default=None, help="expected checksum of the archive")
    download.set_defaults(func=_data_download)

    encoder = commands.add_parser("encoder", help="Task 1: the MS-CNN").add_subparsers(
        dest="encoder_command", required=True)
    train = encoder.add_parser("train", help="train an MS-CNN preset")
    train.add_argument("--data", type=Path, required=True)
    train.add_argument("--split", type=Path, required=True)
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--preset", default="cpu", choices=["smoke", "cpu", "paper"])
    train.add_argument("--k-size-stream2", type=int, choices=[5, 7, 9])
    train.add_argument("--width-multiplier", type=float)
    train.add_argument("--epochs", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--balance", choices=["oversample", "weight", "none"])
    train.add_argument("--seed", type=int)
    train.set_defaults(func=_encoder_train)
    evaluate = encoder.add_parser("evaluate", help="metrics with 95%% intervals on a split")
    evaluate.add_argument("--model", type=Path, required=True)
    evaluate.add_argument("--data", type=Path, required=True)
    evaluate.add_argument("--split", type=Path, required=True)
    evaluate.add_argument("--split-name", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--stride", type=int, help="whole-record mode: samples between windows (default: "
                                                      "the checkpoint's, 1200 = 4 s)")
    evaluate.add_argument("--out", type=Path)
    evaluate.set_defaults(func=_encoder_evaluate)

    llm = commands.add_parser("llm", help="Task 2: the ECG-LLM").add_subparsers(dest="llm_command", required=True)
    llm_train = llm.add_parser("train", help="train projector + LoRA on cached encoder features (accelerate)")
    llm_train.add_argument("--data", type=Path, required=True)
    llm_train.add_argument("--split", type=Path, required=True)
    llm_train.add_argument("--encoder", type=Path, required=True)
    llm_train.add_argument("--out", type=Path, required=True)
    llm_train.add_argument("--evaluate", action=argparse.BooleanOptionalAction, default=True)
    _add_llm_options(llm_train)
    llm_train.set_defaults(func=_llm_train)
    llm_eval = llm.add_parser("evaluate", help="scoring, generation, grounding and comparison with Task 1")
    llm_eval.add_argument("--model", type=Path, required=True)
    llm_eval.add_argument("--data", type=Path, required=True)
    llm_eval.add_argument("--split", type=Path, required=True)
    _add_llm_options(llm_eval)
    llm_eval.set_defaults(func=_llm_evaluate)

    diagnose = commands.add_parser("diagnose", help="diagnose recordings (.mat, WFDB .hea/.dat, .csv, .npy)")
    diagnose.add_argument("paths", type=Path, nargs="*", help="files or folders")
    diagnose.add_argument("--examples", action="store_true", help="also diagnose the bundled CinC example records")
    diagnose.add_argument("--model", type=Path, required=True, help="a run folder or a trained ECG-LLM folder "
                                                                     "(RUN/llm/final)")
    diagnose.add_argument("--fs", type=float, help="sampling rate for files without a header")
    diagnose.add_argument("--lead", help="lead name or index for multi-lead files")
    diagnose.add_argument("--gain", type=float, help="units per mV for headerless files (default: values are mV)")
    diagnose.add_argument("--json", action="store_true", help="machine-readable output")
    diagnose.add_argument("--csv", type=Path, help="also write one row per record")
    diagnose.add_argument("--plots", type=Path, help="folder for each record's ECG strip and RR plots (PNG)")
    diagnose.add_argument("--lang", choices=["zh", "en"], help="language of the printed answer (default: the "
                                                                "model's; the other one is the answer template)")
    diagnose.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    diagnose.set_defaults(func=_diagnose)

    external = commands.add_parser("evaluate-external", help="window-level validation on a WFDB database with "
                                                             "rhythm annotations (MIT-BIH style aux_note)")
    external.add_argument("--wfdb", type=Path, required=True, help="folder of WFDB records (.hea + signal + .atr)")
    external.add_argument("--model", type=Path, required=True, help="a run folder or a trained ECG-LLM folder")
    external.add_argument("--out", type=Path, help="results folder (default: beside the model)")
    external.add_argument("--lead", default="0", help="lead name or index (default: the first)")
    external.add_argument("--annotator", default="atr", help="annotation file extension (default: atr)")
    external.add_argument("--af-rhythms", default="(AFIB", help="comma-separated aux_note rhythms counted as AF, "
                                                                  "e.g. '(AFIB,(AFL' (default: '(AFIB')")
    external.add_argument("--min-af-share", type=float, default=0.5,
                          help="a window is AF when AF covers more than this share of it (default: 0.5)")
    external.add_argument("--batch-size", type=int, default=16)
    external.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda if available)")
    external.set_defaults(func=_evaluate_external)

    serve = commands.add_parser("serve", help="the HTTP API and the page (FastAPI + uvicorn)")
    serve.add_argument("--model", type=Path, required=True, help="a run folder or a trained ECG-LLM folder")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda if available)")
    serve.add_argument("--max-upload-mb", type=float, default=20.0)
    serve.add_argument("--max-seconds", type=float, default=600.0, help="longest recording a request may carry")
    serve.set_defaults(func=_serve)

    report = commands.add_parser("report", help="one self-contained HTML page on a trained run")
    report.add_argument("run", type=Path, help="the run folder of `ecgllm run`")
    report.add_argument("--out", type=Path, help="HTML file to write (default: RUN/report.html)")
    report.add_argument("--data", type=Path, help="data folder for the example strips (default: the run's own)")
    report.add_argument("--llm-name", default="llm", help="the LLM folder inside the run (default: llm)")
    report.add_argument("--examples", type=int, default=2, help="test records shown per kind (correct AF, correct "
                                                                "normal, false alarm, missed AF)")
    report.set_defaults(func=_report)

    main_job = commands.add_parser("run", help="the main job: split, encoder, LLM, evaluation, comparison "
                                               "(resumable)")
    main_job.add_argument("--data", type=Path, required=True)
    main_job.add_argument("--out", type=Path, required=True)
    main_job.add_argument("--preset", default="cpu", choices=["smoke", "cpu", "qwen3-8b"])
    main_job.add_argument("--lm", help="backbone override, e.g. a local Qwen3-8B folder")
    main_job.add_argument("--seed", type=int, default=42)
    main_job.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ecgllm.utils import setup_logging

    setup_logging(args.verbose)
    try:
        return args.func(args)
    except ECGLLMError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
