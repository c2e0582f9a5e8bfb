"""The `ecgllm` command: a thin layer over the Python API (parsing and printing only). Settings flags are made from
the configuration dataclasses (`ecgllm.configuration_utils`): a flag left out keeps the preset's value."""

import argparse
import sys
from pathlib import Path

from ecgllm import __version__
from ecgllm.configuration_utils import add_config_arguments, given_settings, override
from ecgllm.data.dataset import check_folder, load_cinc_folder
from ecgllm.data.download import PHYSIONET_URL, download_cinc2017
from ecgllm.data.readers import ReadSettings
from ecgllm.data.split import Split, make_split
from ecgllm.encoder.configuration_mscnn import (
    EncoderTrainingConfig,
    MSCNNConfig,
    encoder_model_preset,
    encoder_training_preset,
)
from ecgllm.encoder.evaluate import evaluate_encoder, format_encoder_result
from ecgllm.encoder.modeling_mscnn import load_encoder
from ecgllm.errors import ECGLLMError, RecordError, SettingError
from ecgllm.examples import example_paths
from ecgllm.inference.batch import diagnose_files, format_outcome
from ecgllm.llm.configuration_ecgllm import (
    LLM_PRESETS,
    ECGLLMConfig,
    LLMEvaluationConfig,
    LLMTrainingConfig,
    llm_training_preset,
)
from ecgllm.llm.evaluate import format_llm_result
from ecgllm.runs.external import ExternalConfig, evaluate_external, format_external
from ecgllm.runs.layout import RunLayout, load_model, resolve_model_dir
from ecgllm.runs.report import write_report
from ecgllm.utils import resolve_device, setup_logging

# The training code (encoder and LLM training, the main job) and the web server load only in the commands that run
# them, so that `ecgllm diagnose` and `ecgllm serve` never import it.


def _data_check(args) -> None:
    print(check_folder(args.dir, progress=not args.quiet).report())


def _data_split(args) -> None:
    split = make_split(load_cinc_folder(args.dir, task=args.task, progress=not args.quiet).labels, args.task, args.seed)
    split.save(args.out)
    print(f"{args.out}: {split.summary()}")


def _data_download(args) -> None:
    print(f"data ready in {download_cinc2017(args.out, args.url or PHYSIONET_URL, args.sha256, not args.quiet)}")


def _load_data(args):
    split = Split.load(args.split)
    return load_cinc_folder(args.data, task=split.task, progress=not args.quiet), split


def _training_for_split(args, config_class, task_preset):
    """The data, the split and `task_preset(args.preset, split's task)` with the given flags; flags that break the
    preset fail before the data are read."""
    settings = given_settings(args, config_class)
    override(task_preset(args.preset, "binary"), settings)  # the task is not known yet: any task's preset checks them
    dataset, split = _load_data(args)
    return dataset, split, override(task_preset(args.preset, split.task), settings)


def _encoder_train(args) -> None:
    from ecgllm.encoder.training import train_encoder

    # The split says the task: a four-class split trains a four-way head, on the preset's schedule for that task.
    dataset, split, train_config = _training_for_split(args, EncoderTrainingConfig, encoder_training_preset)
    model_config = override(encoder_model_preset(args.preset, split.task), given_settings(args, MSCNNConfig))
    train_encoder(dataset, split, args.out, model_config, train_config, not args.quiet, args.device)


def _encoder_evaluate(args) -> None:
    model = load_encoder(args.model).to(resolve_device(args.device))
    if args.stride is not None:
        model.config.preprocess.stride = args.stride
    dataset, split = _load_data(args)
    # RUN/encoder/eval holds the test figures a run reads back: another split's go beside them.
    name = "eval" if args.split_name == "test" else f"eval_{args.split_name}"
    out = args.out or Path(args.model) / (name if args.max_seconds is None else f"{name}_{args.max_seconds:g}s")
    result = evaluate_encoder(model, dataset, split, out, args.split_name, progress=not args.quiet,
                              max_seconds=args.max_seconds)
    print(f"{format_encoder_result(result)}\nwritten to {out}")


def _encoder_calibrate(args) -> None:
    from ecgllm.encoder.training import calibrate_encoder

    dataset, split = _load_data(args)
    model = calibrate_encoder(args.model, args.out, dataset, split, args.offset_check_repeats, args.device)
    print(f"decision rule chosen on validation: thresholds {model.config.thresholds}, class offsets "
          f"{model.config.class_offsets}, checks {model.config.class_offset_checks}\nwritten to {args.out}")


def _evaluate_llm(model_dir: Path, dataset, split, out: Path | None, cache: Path | None, encoder_eval: Path | None,
                  settings: dict, quiet: bool, device: str) -> None:
    from ecgllm.runs.job import evaluate_run_llm

    result, out = evaluate_run_llm(model_dir, dataset, split, out, cache, encoder_eval, settings, progress=not quiet,
                                   device=device)
    print(f"{format_llm_result(result)}\nwritten to {out}")


def _llm_train(args) -> None:
    from ecgllm.llm.training import train_llm

    model_config = override(LLM_PRESETS[args.preset][0], given_settings(args, ECGLLMConfig))
    dataset, split, train_config = _training_for_split(args, LLMTrainingConfig, llm_training_preset)
    cache = args.cache or RunLayout.of_llm_folder(args.out).cache
    final = train_llm(dataset, split, args.encoder, args.out, model_config, train_config, cache, not args.quiet,
                      args.device)
    print(f"trained model in {final}")
    if args.evaluate:
        _evaluate_llm(final, dataset, split, args.eval_out, cache, args.encoder_eval or args.encoder / "eval",
                      given_settings(args, LLMEvaluationConfig, "eval-"), args.quiet, args.device)


def _llm_evaluate(args) -> None:
    dataset, split = _load_data(args)
    _evaluate_llm(args.model, dataset, split, args.out, args.cache, args.encoder_eval,
                  given_settings(args, LLMEvaluationConfig), args.quiet, args.device)


def _diagnose(args) -> int:
    from accelerate import PartialState

    paths = list(args.paths) + (example_paths() if args.examples else [])
    if not paths:
        raise SettingError("nothing to diagnose: give files or folders, or --examples")

    def show(path, outcome):  # errors on stderr; results on stdout unless it carries the JSON
        if isinstance(outcome, RecordError) or not args.json:
            print(format_outcome(path, outcome, args.lang), file=sys.stderr if isinstance(outcome, RecordError)
                  else sys.stdout)

    read = override(ReadSettings(), given_settings(args, ReadSettings))
    batch = diagnose_files(load_model(args.model, args.device), paths, read, args.plots, show)
    if not PartialState().is_main_process:  # under `accelerate launch`: every process has the whole result
        return 0
    if args.json:
        print(batch.to_json())
    if args.csv:
        batch.write_csv(args.csv)
    return 1 if batch.failures and not batch.results else 0


def _evaluate_external(args) -> None:
    model = load_model(args.model, args.device)
    config = override(ExternalConfig(), given_settings(args, ExternalConfig))
    out = args.out or RunLayout.of_model_dir(resolve_model_dir(args.model)).llm / f"external_{args.wfdb.resolve().name}"
    print(f"{format_external(evaluate_external(model, args.wfdb, out, config, not args.quiet))}\nwritten to {out}")


def _serve(args) -> None:
    import uvicorn

    from ecgllm.serving.app import ServeLimits, create_app

    limits = ServeLimits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_seconds=args.max_seconds)
    app = create_app(load_model(args.model, args.device), limits)
    print(f"serving on http://{args.host}:{args.port}/ (API documentation: /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info")


def _report(args) -> None:
    print(f"report written to {write_report(args.run, args.out, args.data, args.llm_name, args.examples)}")


def _run(args) -> None:
    from ecgllm.runs.job import run

    run(args.data, args.out, args.preset, args.seed, args.lm, progress=not args.quiet, device=args.device,
        task=args.task)


def _command(commands, name: str, handler, help: str, *arguments: tuple[str, dict]) -> argparse.ArgumentParser:
    """A subcommand with its arguments, each given as (flag or name, add_argument options)."""
    parser = commands.add_parser(name, help=help, description=help)
    for flag, options in arguments:
        parser.add_argument(flag, **options)
    parser.set_defaults(func=handler)
    return parser


PATH, REQUIRED = {"type": Path}, {"type": Path, "required": True}
DEVICE = ("--device", {"default": "auto", "help": "cpu, cuda, cuda:1, ... (default: cuda if available)"})
MODEL = ("--model", {**REQUIRED, "help": "a run folder or a trained ECG-LLM folder (RUN/llm/final)"})
DATA = [("--data", REQUIRED), ("--split", REQUIRED)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecgllm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ecgllm {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="check, split or download a CinC 2017 folder").add_subparsers(
        dest="data_command", required=True)
    _command(data, "check", _data_check, "load every record and list the bad ones", ("dir", PATH))
    _command(data, "split", _data_split, "stratified 75/10/15 split saved as record ids", ("dir", PATH),
             ("--out", REQUIRED), ("--task", {"default": "binary", "choices": ["binary", "four"]}),
             ("--seed", {"type": int, "default": 42}))
    _command(data, "download", _data_download, "fetch training2017.zip from PhysioNet and unpack it",
             ("--out", REQUIRED), ("--url", {"help": "where training2017.zip lives (default: PhysioNet)"}),
             ("--sha256", {"help": "expected checksum of the archive"}))

    encoder = commands.add_parser("encoder", help="Task 1: the MS-CNN").add_subparsers(dest="encoder_command",
                                                                                        required=True)
    train = _command(encoder, "train", _encoder_train, "train an MS-CNN preset", *DATA, ("--out", REQUIRED),
                     ("--preset", {"default": "cpu", "choices": ["smoke", "cpu", "paper"]}), DEVICE)
    add_config_arguments(train, MSCNNConfig, "network (default: the preset's)")
    add_config_arguments(train, EncoderTrainingConfig, "training (default: the preset's)")
    _command(encoder, "evaluate", _encoder_evaluate, "metrics with bootstrap intervals on a split",
             ("--model", REQUIRED), *DATA, ("--split-name", {"default": "test", "choices": ["train", "val", "test"]}),
             ("--stride", {"type": int, "help": "whole-record mode: samples between windows (default: 1200)"}),
             ("--max-seconds", {"type": float, "help": "score only each record's first S seconds (e.g. 10, as a "
                                                       "device that records 10 s)"}),
             ("--out", {**PATH, "help": "default: MODEL/eval (test) or MODEL/eval_SPLIT, + _Ss with --max-seconds"}),
             DEVICE)
    _command(encoder, "calibrate", _encoder_calibrate, "choose a trained encoder's decision rule again on validation, "
             "under the current rule (four classes: checked offsets), into a copy",
             ("--model", REQUIRED), *DATA, ("--out", REQUIRED),
             ("--offset-check-repeats", {"type": int, "default": EncoderTrainingConfig.offset_check_repeats,
                                         "help": "four classes: validation halvings of the check (0: unchecked)"}),
             DEVICE)

    llm = commands.add_parser("llm", help="Task 2: the ECG-LLM").add_subparsers(dest="llm_command", required=True)
    compare = ("--encoder-eval", {**PATH, "help": "Task 1 eval folder to compare with (default: the run's)"})
    cache = ("--cache", {**PATH, "help": "ECG token and rhythm cache (default: RUN/cache of the run holding it)"})
    train = _command(llm, "train", _llm_train, "train projector + LoRA on cached encoder features (accelerate)",
                     *DATA, ("--encoder", REQUIRED), ("--out", {**REQUIRED, "help": "e.g. RUN/llm"}),
                     ("--preset", {"default": "cpu", "choices": ["smoke", "cpu", "qwen3-8b"]}), cache,
                     ("--evaluate", {"action": argparse.BooleanOptionalAction, "default": True}), compare,
                     ("--eval-out", PATH), DEVICE)
    add_config_arguments(train, ECGLLMConfig, "model (default: the preset's)")
    add_config_arguments(train, LLMTrainingConfig, "training (default: the preset's)")
    add_config_arguments(train, LLMEvaluationConfig, "evaluation after training (default: the preset's)", "eval-")
    evaluate = _command(llm, "evaluate", _llm_evaluate, "scoring, generation, grounding and comparison with Task 1; "
                        "writes the validated threshold beside the model", ("--model", REQUIRED), *DATA, cache,
                        compare, ("--out", PATH), DEVICE)
    add_config_arguments(evaluate, LLMEvaluationConfig, "evaluation (default: the model's preset's)")

    diagnose = _command(commands, "diagnose", _diagnose, "diagnose recordings (.mat, WFDB .hea/.dat, .csv, .npy)",
             ("paths", {"type": Path, "nargs": "*", "help": "files or folders"}),
             ("--examples", {"action": "store_true", "help": "also diagnose the bundled CinC example records"}), MODEL,
             ("--json", {"action": "store_true", "help": "machine-readable output"}),
             ("--csv", {**PATH, "help": "also write one row per record"}),
             ("--plots", {**PATH, "help": "folder for each record's ECG strip and RR plots (PNG)"}),
             ("--lang", {"choices": ["zh", "en"], "help": "printed answer's language (default: the model's)"}), DEVICE)
    add_config_arguments(diagnose, ReadSettings, "reading files")
    external = _command(commands, "evaluate-external", _evaluate_external, "validation on a WFDB database from "
                        "another device: 8-s windows or 30-s segments of annotated recordings (MIT-BIH style "
                        "aux_note), or whole records with a header rhythm (LUDB)",
                        ("--wfdb", {**REQUIRED, "help": "folder of WFDB records (.hea + signal [+ .atr])"}), MODEL,
                        ("--out", {**PATH, "help": "results folder (default: beside the model)"}), DEVICE)
    add_config_arguments(external, ExternalConfig, "records and labels (default: the first lead, (AFIB, 0.5)")
    _command(commands, "serve", _serve, "the HTTP API and the page (FastAPI + uvicorn)", MODEL,
             ("--host", {"default": "127.0.0.1"}), ("--port", {"type": int, "default": 8000}), DEVICE,
             ("--max-upload-mb", {"type": float, "default": 20.0}),
             ("--max-seconds", {"type": float, "default": 600.0, "help": "longest recording a request may carry"}))
    _command(commands, "report", _report, "one self-contained HTML page on a trained run",
             ("run", {**PATH, "help": "the run folder of `ecgllm run`"}),
             ("--out", {**PATH, "help": "HTML file to write (default: RUN/report.html)"}),
             ("--data", {**PATH, "help": "data folder for the example strips (default: the run's own)"}),
             ("--llm-name", {"default": "llm", "help": "the LLM folder inside the run (default: llm)"}),
             ("--examples", {"type": int, "default": 2, "help": "test records shown per kind of right or wrong"}))
    _command(commands, "run", _run, "the main job: split, encoder, LLM, evaluation, comparison (resumable)",
             ("--data", REQUIRED), ("--out", REQUIRED),
             ("--preset", {"default": "cpu", "choices": ["smoke", "cpu", "qwen3-8b"]}),
             ("--lm", {"help": "backbone override, e.g. a local Qwen3-8B folder"}),
             ("--task", {"default": "four", "choices": ["four", "binary"],
                         "help": "four: N, A, O and noisy records (CinC's classes); binary: N vs A alone (the SPEC's "
                                 "protocol)"}),
             ("--seed", {"type": int, "default": 42}), DEVICE)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return args.func(args) or 0  # handlers return an exit status only when it is not 0
    except ECGLLMError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
