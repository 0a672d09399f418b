"""The Python API: train a model, run a paper's evaluation protocol.

    import clinloop
    folder = clinloop.train("lexu", "data/riga", "models/my-lexu", epochs=20, structure="cup")
    res = clinloop.evaluate("lexu", "lexu", "data/riga", model=folder, structure="cup")
    summary = clinloop.predict("data/riga", "preds/", model=folder, structure="cup", workers=2)

Keyword options are the command line's flags with dashes as underscores
(``--held-out-fraction`` -> ``held_out_fraction``; older spellings such as
``val_fraction`` / ``test_fraction`` are accepted too). Each method's options are
one dataclass (:func:`train_options_class`), each protocol's too
(:func:`protocol_options_class`); the CLI parses into the same dataclasses, so
both have the same defaults. An unknown keyword is a ``TypeError`` naming it.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

# method -> trainer module (exposing OPTIONS, a TrainOptions dataclass, and train_model(options) -> Path)
TRAINERS = {
    "spa": "clinloop.training.spa",
    "meduhip": "clinloop.training.spa",
    "spa-random-gmm": "clinloop.training.spa",
    "spa-mean-variance": "clinloop.training.spa",
    "spa-weights": "clinloop.training.spa",
    "click-litemedsam": "clinloop.training.click_litemedsam",
    "lexu": "clinloop.training.lexu",
    "unet": "clinloop.training.lexu",
    "ensemble": "clinloop.training.lexu",
    "layer-ensemble": "clinloop.training.lexu",
    "mc-dropout": "clinloop.training.lexu",
    "mecca": "clinloop.training.mecca",
    "mecca-no-confidence": "clinloop.training.mecca",
    "interactive-cnn": "clinloop.training.mecca",
    "mecca-unet": "clinloop.training.mecca",
}

# protocol -> module (exposing METHODS, OPTIONS, a ProtocolOptions dataclass, and run_protocol(options) -> dict)
PROTOCOLS = {
    "spa": "clinloop.evaluation.spa_protocol",
    "spa-3d": "clinloop.evaluation.spa3d_protocol",
    "lexu": "clinloop.evaluation.lexu_protocol",
    "mecca": "clinloop.evaluation.mecca_protocol",
    "clicks": "clinloop.evaluation.clicks_protocol",
}


def load(registry: dict[str, str], key: str, what: str):
    """The module registered for ``key`` (``ValueError`` naming the choices if none)."""
    if key not in registry:
        raise ValueError(f"unknown {what} {key!r}; choose from {', '.join(sorted(registry))}")
    try:
        return importlib.import_module(registry[key])
    except ModuleNotFoundError as e:
        if e.name == registry[key]:
            raise ValueError(f"{what} {key!r} is not available in this build ({registry[key]} missing)") from e
        raise


def train_options_class(method: str):
    """The options dataclass of ``method``'s trainer (fields = ``clinloop train`` flags)."""
    return load(TRAINERS, method, "method").OPTIONS


def protocol_options_class(protocol: str):
    """The options dataclass of ``protocol`` (fields = ``clinloop evaluate`` flags)."""
    return load(PROTOCOLS, protocol, "protocol").OPTIONS


def check_protocol_method(mod, protocol: str, method: str) -> None:
    if method not in mod.METHODS:
        raise ValueError(f"protocol {protocol!r} evaluates methods {', '.join(mod.METHODS)}; got {method!r}")


def train(method: str, data: str | Path, out: str | Path, **config: Any) -> Path:
    """Train ``method`` on the dataset at ``data`` into the model folder ``out``.

    ``config``: the method's options (``clinloop train --method M --help``), e.g.
    ``steps=100``, ``seed=1``, ``held_out_fraction=0.3``. Returns the model folder
    (``config.json``, ``weights.pt``, ``data.json``, ...), loadable with
    :func:`clinloop.load_model`."""
    from clinloop.config_options import make_options

    mod = load(TRAINERS, method, "method")
    opts = make_options(mod.OPTIONS, f"clinloop.train({method!r})", method=method, data=str(data), out=str(out),
                        **config)
    return Path(mod.train_model(opts))


def evaluate(method: str, protocol: str, data: str | Path, model: str | Path | None = None,
             **options: Any) -> dict[str, Any]:
    """Run ``protocol`` ("spa", "spa-3d", "lexu", "mecca") for ``method`` on ``data``.

    ``model``: a model folder or shipped name (default: the method's shipped
    model). ``options``: the protocol's options (``clinloop evaluate --protocol P
    --method M --help``), e.g. ``limit=20``, ``seed=0``, ``out="results.json"``
    (without ``out`` nothing is written). Returns the results dict (the content
    of ``results.json``)."""
    from clinloop.config_options import make_options

    mod = load(PROTOCOLS, protocol, "protocol")
    check_protocol_method(mod, protocol, method)
    opts = make_options(mod.OPTIONS, f"clinloop.evaluate({method!r}, {protocol!r})", method=method,
                        protocol=protocol, data=str(data), model=None if model is None else str(model), **options)
    return mod.run_protocol(opts)


def predict(data: str | Path, out: str | Path, model: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """Segment every case of ``data`` into ``out`` (``clinloop predict``): per case a
    mask, probability and uncertainty map, plus ``out/predictions.csv``.

    ``model``: a model folder or shipped name (default: the shipped LEXU model,
    ``lexu-lidc``). ``options``: the fields of
    :class:`clinloop.inference.predict.PredictOptions`, e.g. ``workers=2``,
    ``shard="0/4"``, ``prompts="clicks.csv"``. Resumable: a rerun skips finished
    cases. Returns the run's summary dict."""
    from clinloop.config_options import make_options
    from clinloop.inference.predict import PredictOptions, predict as run

    if model is not None:
        options["model"] = str(model)
    return run(make_options(PredictOptions, "clinloop.predict", data=str(data), out=str(out), **options))


def benchmark(suite: str = "all", data_root: str | Path = "../shared/data", out: str | Path = "report",
              **options: Any) -> dict[str, Any]:
    """Compute benchmark suites into the report folder ``out`` (``clinloop benchmark``).

    ``suite``: ``ambiguity``, ``spa``, ``speed``, ``lexu``, ``mecca``, ``meduhip`` or
    ``all``; ``options``: the other fields of
    :class:`clinloop.evaluation.benchmark.BenchmarkOptions` (``quick=True``,
    ``full=True``, ``force=["ambiguity-lexu"]``, ``seed``, ``threads``, ``jobs``). Finished
    stages are reused. Returns the run summary (stages computed / reused)."""
    from clinloop.config_options import make_options
    from clinloop.evaluation.benchmark.runner import BenchmarkOptions, run_benchmark

    return run_benchmark(make_options(BenchmarkOptions, "clinloop.benchmark", suite=suite, data_root=str(data_root),
                                      out=str(out), **options))
