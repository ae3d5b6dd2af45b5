"""The model card written beside each export: what the model was trained on, how inputs are made, its architecture
and metrics, and how to run it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from nascli import __version__
from nascli.printout import cell
from nascli.records import ModelHeader, Summary, kept_flops_share

RUN_IT = {
    "onnx": """```python
import json, numpy as np, onnxruntime
session = onnxruntime.InferenceSession("{file}")
meta = session.get_modelmeta().custom_metadata_map   # nascli.classes, nascli.preprocessing, nascli.arch, ...
classes = json.loads(meta["nascli.classes"])
{inputs}
print([classes[i] for i in logits.argmax(1)])
```""",
    "torchscript": """```python
import json, torch
files = {{"nascli.json": ""}}
model = torch.jit.load("{file}", _extra_files=files)   # files["nascli.json"]: classes, preprocessing, arch, ...
classes = json.loads(files["nascli.json"])["nascli.classes"]
{inputs}
print([classes[i] for i in logits.argmax(1)])
```""",
}


def card_beside(export: Path) -> Path:
    """Where the model card of an exported file goes: beside it (model.onnx: model_card.md)."""
    return export.with_name(f"{export.stem}_card.md")


def description(header: ModelHeader) -> dict[str, str]:
    """What an export carries about its model, each value as JSON text: nascli's version, the space, architecture
    and input shape, and (where the checkpoint has them) the class names and how raw inputs are made."""
    described = header.preprocessing
    values: dict[str, Any] = {"version": __version__, "space": header.space, "arch": header.arch,
                              "input_shape": header.input_shape, "num_classes": header.num_classes}
    if described is not None:
        values.update(classes=described.classes, preprocessing=described.to_dict())
    return {f"nascli.{key}": json.dumps(value) for key, value in values.items()}


def _preprocessing_lines(header: ModelHeader) -> list[str]:
    described = header.preprocessing
    if described is None:
        return ["Not recorded: this model was retrained before nascli kept its preprocessing; `nas retrain RUN` "
                "makes one that has it."]
    lines = [f"- kind of input: {described.kind}"]
    if described.image_size:
        lines.append(f"- images resized to {described.image_size} x {described.image_size}, {described.channels} "
                     "channel(s)" + (f", pixels divided by {described.pixel_divisor:g}" if described.pixel_divisor
                                     else ""))
    if described.audio:
        settings = ", ".join(f"{k} {v}" for k, v in described.audio.items())
        lines.append(f"- recordings as log-mel spectrograms: {settings}")
    if described.vocabulary:
        vocabulary = described.vocabulary
        lines.append(f"- sentences tokenized by `{vocabulary.get('token_pattern')}` (lowercase: "
                     f"{vocabulary.get('lowercase')}), at most {vocabulary.get('max_length')} tokens, into a "
                     f"vocabulary of {len(vocabulary.get('tokens', []))} (0 pads, 1 is unknown)")
    if described.mean is not None:
        lines.append(f"- then standardised per channel: mean {_numbers(described.mean)}, std {_numbers(described.std)}")
    return lines


def _compression_lines(compression: Optional[dict[str, Any]]) -> list[str]:
    if compression is None:
        return ["None: the weights are the retrained model's, in float32."]
    c = compression
    return [f"`{Path(c['file']).name}`: {c['quantisation']} quantisation by ONNX Runtime, {c['method']}.", "",
            "| model | test_acc | size | latency, batch 1 | latency, batch 64 |", "|---|---|---|---|---|",
            *(f"| {label} | {c[f'{label}_test_acc']:.2f} | {c[f'{label}_bytes'] / 1024:.0f} kB | "
              f"{c[f'{label}_latency_ms_batch1']:.3g} ms | {c[f'{label}_latency_ms_batch64']:.3g} ms |"
              for label in ("float", "int8")),
            "", "Latency: median of ONNX Runtime runs on the CPU of the machine that exported it."]


def _numbers(values: Optional[list[float]]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values or []) + "]"


def _inputs(fmt: str, header: ModelHeader) -> str:
    """The lines of the example that make a batch of inputs and run it."""
    described = header.preprocessing
    if described is not None and described.kind == "text":
        name, batch = "ids", "ids = np.array([[2, 3, 4]])  # token ids of a sentence (vocabulary: nascli.preprocessing)"
    else:
        shape = ", ".join(str(n) for n in header.input_shape)
        name, batch = "x", f"x = np.random.randn(4, {shape}).astype(np.float32)  # inputs made as under Preprocessing"
    if fmt == "onnx":
        return f"{batch}\nlogits = session.run(None, {{session.get_inputs()[0].name: {name}}})[0]"
    return f"import numpy as np\n{batch}\nlogits = model(torch.from_numpy({name})).detach().numpy()"


def model_card(header: ModelHeader, fmt: str, file: str, run_path: str, config: dict[str, Any],
               metrics: Optional[dict[str, Any]], summary: Optional[Summary],
               compression: Optional[dict[str, Any]] = None) -> str:
    """The model card of an export (Markdown)."""
    described = header.preprocessing
    dataset = config.get("dataset") or {}
    classes = ", ".join(described.classes) if described is not None else f"{header.num_classes} (names not recorded)"
    lines = [f"# Model card: {run_path}", "",
             f"Found by nascli {__version__} (`nas search`) and exported as {fmt} to `{file}`.", "",
             "## Data", "", f"- dataset: `{dataset.get('name')}`" + (f" ({summary.dataset})" if summary and
                                                                    summary.dataset != dataset.get("name") else ""),
             f"- classes ({header.num_classes}): {classes}", "", "## Preprocessing", "",
             *_preprocessing_lines(header), "", "## Architecture", "",
             f"- space: `{header.space}`, input shape {header.input_shape}", f"- `{json.dumps(header.arch)}`"]
    if metrics is not None:
        lines += [f"- {metrics.get('params')} parameters, {metrics.get('flops')} FLOPs per sample", "",
                  "## Metrics", "", "Of the retrained model on the test split, which neither the search nor the "
                  "retraining saw:", ""]
        lines += [f"- {key}: {metrics[key]:.4g}" for key in ("test_acc", "test_top5", "test_f1", "test_auc")
                  if isinstance(metrics.get(key), (int, float))]
        if isinstance(metrics.get("latency_ms"), (int, float)):
            lines.append(f"- latency: {metrics['latency_ms']:.3g} ms per batch on the machine that trained it")
        if isinstance(metrics.get("epochs"), (int, float)):
            lines.append(f"- retrained for {metrics['epochs']:g} epochs in {metrics.get('train_seconds', 0):.0f} s")
    if summary is not None and summary.best_value is not None:
        lines.append(f"- the search's best {summary.objective} (validation split): {summary.best_value:.4g}")
    pruned = (metrics or {}).get("pruned")
    lines += ["", "## Compression", ""]
    if pruned:  # a network nas prune cut from another run's and fine-tuned
        lines += [f"Pruned by `nas prune` from {pruned.get('source')} to {cell(kept_flops_share(metrics))} of its "
                  f"FLOPs (test_acc there {pruned.get('source_test_acc')}), then fine-tuned for "
                  f"{pruned.get('finetune_epochs')} epochs.", ""]
    lines += [*_compression_lines(compression), "", "## How to run it", "",
              f"`nas predict {run_path} INPUTS...` labels raw files with the checkpoint."]
    if not isinstance(header.input_shape, dict):  # a model of several inputs takes them in nascli.input_shape's order
        lines += [f"With the {fmt} file alone:", "", RUN_IT[fmt].format(file=file, inputs=_inputs(fmt, header))]
    lines.append("")
    return "\n".join(lines)
