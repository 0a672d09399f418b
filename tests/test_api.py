"""The Python API (``clinloop.train`` / ``clinloop.evaluate``) against the CLI, the
options dataclasses against the CLI's flags, and the layering rule (no argparse
outside ``clinloop.cli``)."""
from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import clinloop
from tests._lexu_fixtures import write_tiny_riga
from tests.test_spa_protocol import _write_lidc, stub_backbone  # noqa: F401 - fixture

SRC = Path(__file__).resolve().parents[1] / "src" / "clinloop"
LEXU_TINY = dict(size=32, widths="4,6,8,8", batch_size=4, threads=1, structure="cup", members=2, mc_samples=3)


def _flags(d: dict) -> list[str]:
    out = []
    for k, v in d.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def _weights(folder) -> dict:
    return torch.load(Path(folder) / "weights.pt", weights_only=True)


# ---------------------------------------------------------------- LEXU family: train + evaluate, API == CLI
@pytest.mark.parametrize("method", ["lexu", "unet"])
def test_lexu_family_train_and_evaluate_equal_the_cli(tmp_path, method):
    from clinloop.cli import main

    data = write_tiny_riga(tmp_path / "riga.npz")
    folder = clinloop.train(method, data, tmp_path / "api", epochs=2, **LEXU_TINY)
    assert folder == tmp_path / "api" and isinstance(folder, Path)
    for f in ("config.json", "weights.pt", "data.json", "metrics.json"):
        assert (folder / f).is_file(), f
    assert not (folder / "checkpoint.pt").exists()
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["method"] == method and cfg["size"] == 32 and cfg["widths"] == [4, 6, 8, 8]
    info = json.loads((folder / "data.json").read_text())
    assert info["dataset"] == str(data)  # as given
    assert len(info["test_cases"]) == 3 and not set(info["test_cases"]) & set(info["train_cases"])  # 0.3 of 10
    assert info["command"].startswith(f"clinloop train --method {method} ")
    assert "--held-out-fraction 0.3" in info["command"]
    # the same options through the CLI give the same network and the same split
    assert main(["train", "--method", method, "--data", str(data), "--out", str(tmp_path / "cli"), "--epochs", "2",
                 *_flags(LEXU_TINY)]) == 0
    a, b = _weights(folder), _weights(tmp_path / "cli")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    info_cli = json.loads((tmp_path / "cli" / "data.json").read_text())
    assert info_cli["test_cases"] == info["test_cases"]

    res = clinloop.evaluate(method, "lexu", data, model=folder, split="all", difficulty_cases=0)
    assert res["method"] == method and res["protocol"] == "lexu" and res["n_cases"] == 10
    assert 0 <= res["soft_dice"] <= 1 and res["ece"] >= 0 and res["nll"] > 0 and -1 <= res["spearman"] <= 1
    assert res["forward_passes"] == 1 and res["parameters"] > 0
    out = tmp_path / "res.json"
    assert main(["evaluate", "--method", method, "--protocol", "lexu", "--data", str(data), "--model", str(folder),
                 "--split", "all", "--difficulty-cases", "0", "--no-figures", "--out", str(out)]) == 0
    cli = json.loads(out.read_text())
    timing = {"seconds_per_image"}
    assert {k: v for k, v in cli.items() if k not in timing} == {k: v for k, v in res.items() if k not in timing}


def test_old_keyword_spellings_and_unknown_keywords(tmp_path):
    data = write_tiny_riga(tmp_path / "riga.npz")
    a = clinloop.train("unet", data, tmp_path / "a", epochs=1, test_fraction=0.5, **LEXU_TINY)
    assert len(json.loads((a / "data.json").read_text())["test_cases"]) == 5
    with pytest.raises(TypeError, match="'epochz'"):
        clinloop.train("unet", data, tmp_path / "b", epochz=1)
    with pytest.raises(TypeError, match="given twice"):
        clinloop.train("unet", data, tmp_path / "b", test_fraction=0.5, held_out_fraction=0.5)
    with pytest.raises(ValueError, match="unknown method 'unetz'"):
        clinloop.train("unetz", data, tmp_path / "b")
    with pytest.raises(TypeError, match="'iterationz'"):
        clinloop.evaluate("spa", "spa", data, iterationz=3)
    with pytest.raises(ValueError, match="evaluates methods"):
        clinloop.evaluate("lexu", "spa", data)


# ---------------------------------------------------------------- MECCA family
def test_mecca_train_and_evaluate(tmp_path, shared_data):
    data = shared_data / "lidc" / "lidc_crops_dev.npz"
    opts = dict(size=32, width=4, iterations=2, batch=2, max_cases=4, val_cases=2, steps=2, threads=1)
    folder = clinloop.train("mecca-unet", data, tmp_path / "m", **opts)
    info = json.loads((folder / "data.json").read_text())
    assert info["data"] == str(data) and info["val_fraction"] == 0.2 and info["n_train_cases"] == 4
    assert not set(info["train_patients"]) & set(info["val_patients"])
    assert json.loads((folder / "config.json").read_text())["method"] == "mecca-unet"
    res = clinloop.evaluate("unet", "mecca", data, model=folder, limit=3, steps=2, seed=0)
    assert res["n_cases"] == 3 and len(res["dice_per_step"]) == 2
    assert all(0 <= d <= 1 for d in res["dice_per_step"]) and all(np.isfinite(res["assd_per_step"]))
    from clinloop.cli import main

    out = tmp_path / "r.json"
    assert main(["evaluate", "--method", "unet", "--protocol", "mecca", "--data", str(data), "--model", str(folder),
                 "--limit", "3", "--steps", "2", "--seed", "0", "--out", str(out)]) == 0
    cli = json.loads(out.read_text())
    cli.pop("seconds_per_step"), res.pop("seconds_per_step")
    assert cli == res


# ---------------------------------------------------------------- SPA family (stub image encoder)
def test_spa_train_and_evaluate(tmp_path, stub_backbone):  # noqa: F811
    _write_lidc(tmp_path / "lidc.npz", n=6)
    folder = clinloop.train("spa", tmp_path / "lidc.npz", tmp_path / "m", format="lidc", steps=2, per_nodule=1,
                            cond_width=8, train_samples=2, samples=4, val_fraction=0.5, user_iterations=2)
    info = json.loads((folder / "data.json").read_text())
    assert info["steps"] == 2 and info["wta_weight"] == 1.0  # the CLI's default, not the collapsing 0
    assert info["split"]["val_fraction"] == 0.5 and len(info["train_case_ids"]) == 3  # 3 of 6 patients
    assert info["data"] == str(tmp_path / "lidc.npz")
    m = clinloop.load_model(folder)
    assert m.name == "spa" and m.config.n_samples == 4
    res = clinloop.evaluate("spa", "spa", tmp_path / "lidc.npz", model=folder, format="lidc", limit=2, iterations=2)
    assert res["n_cases"] == 2 and len(res["dice_per_iteration"]) == 2
    assert all(0 <= d <= 1 for d in res["dice_per_iteration"]) and 0 <= res["candidate_pairwise_dice"] <= 1


def test_spa_trainer_default_equals_the_cli():
    import inspect

    from clinloop.training.spa import SPATrainer, SPATrainOptions

    sig = inspect.signature(SPATrainer.__init__).parameters
    d = SPATrainOptions(method="spa", data="d", out="o")
    for name in ("wta_weight", "wta_relax", "lr", "step_size", "gamma", "user_iterations", "encoder_lr"):
        assert sig[name].default == getattr(d, name), name


# ---------------------------------------------------------------- CLI <-> dataclasses
def test_cli_defaults_equal_the_dataclass_defaults():
    from clinloop.api import PROTOCOLS, TRAINERS, load
    from clinloop.cli.evaluate import parse_options as parse_eval
    from clinloop.cli.train import parse_options as parse_train

    for method in TRAINERS:
        cls = load(TRAINERS, method, "method").OPTIONS
        assert parse_train(method, ["--data", "D", "--out", "O"]) == cls(method=method, data="D", out="O")
    for protocol in PROTOCOLS:
        mod = load(PROTOCOLS, protocol, "protocol")
        m = mod.METHODS[0]
        got = parse_eval(protocol, m, ["--data", "D", "--out", "O"])
        assert got == mod.OPTIONS(method=m, protocol=protocol, data="D", out="O")


def test_train_and_evaluate_help_list_the_choices_and_exit_0(capsys, monkeypatch):
    from clinloop.api import PROTOCOLS, TRAINERS, load
    from clinloop.cli import main

    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps help at the terminal's width
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert "usage: clinloop train [--method M]" in text
    assert f"the method to train (required): {', '.join(sorted(TRAINERS))}\n" in text
    for argv in (["evaluate", "--help"], ["evaluate", "--protocol", "spa", "--help"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "usage: clinloop evaluate [--method M] [--protocol P]" in out
        for p in PROTOCOLS:  # one line per protocol with its methods, as the protocol module lists them
            assert f"  --protocol {p}: --method {', '.join(load(PROTOCOLS, p, 'protocol').METHODS)}\n" in out
    assert main(["train"]) == 2
    assert capsys.readouterr().err.startswith("clinloop: error: train: --method is required; choose from "
                                              "click-litemedsam, ensemble, ")
    assert main(["evaluate", "--protocol", "lexu"]) == 2
    assert "evaluate: --method is required; choose from --protocol clicks: --method spa" in capsys.readouterr().err


def test_old_flag_spellings_still_parse():
    from clinloop.cli.evaluate import parse_options as parse_eval
    from clinloop.cli.train import parse_options as parse_train

    base = ["--data", "D", "--out", "O"]
    assert parse_train("spa", base + ["--val-fraction", "0.3"]).held_out_fraction == 0.3
    assert parse_train("mecca", base + ["--val-fraction", "0.3"]).held_out_fraction == 0.3
    assert parse_train("lexu", base + ["--test-fraction", "0.4"]).held_out_fraction == 0.4
    assert parse_train("click-litemedsam", base + ["--test-fraction", "0.4"]).held_out_fraction == 0.4
    assert parse_eval("spa", "spa", base + ["--val-fraction", "0.1"]).held_out_fraction == 0.1
    o = parse_eval("mecca", "mecca", base + ["--mode", "semisup", "--train-args", "--size 48 --width 12"])
    assert o.mode == "semisup" and o.train_options == {"size": 48, "width": 12}
    o = parse_eval("mecca", "mecca", base + ["--mode", "compare", "--method-model", "mecca=A",
                                             "--method-model", "interactive-cnn=B"])
    assert o.method_model == ["mecca=A", "interactive-cnn=B"]


def test_every_option_field_is_documented_and_typed():
    from clinloop.api import PROTOCOLS, TRAINERS, load

    classes = {load(TRAINERS, m, "method").OPTIONS for m in TRAINERS}
    classes |= {load(PROTOCOLS, p, "protocol").OPTIONS for p in PROTOCOLS}
    for cls in classes:
        names = [f.name for f in dataclasses.fields(cls)]
        assert len(names) == len(set(names))
        assert "held_out_fraction" in names or cls.__name__ in ("LexuProtocolOptions", "MECCAProtocolOptions",
                                                                 "SPA3DProtocolOptions")  # split: the model's data.json


# ---------------------------------------------------------------- layering
def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_no_module_outside_cli_imports_argparse_or_the_cli():
    bad = []
    for p in SRC.rglob("*.py"):
        rel = p.relative_to(SRC)
        if rel.parts[0] in ("cli", "assets"):
            continue
        mods = _imports(p)
        if "argparse" in mods or any(m == "clinloop.cli" or m.startswith("clinloop.cli.") for m in mods):
            bad.append(str(rel))
    assert not bad, f"argparse / clinloop.cli imported outside cli/: {bad}"


def test_lexu_models_have_no_import_cycle():
    """baselines -> network -> (constants, heads, tinyvit); config -> constants only at import time."""
    pkg = SRC / "models" / "lexu"
    graph = {p.stem: {m.rsplit(".", 1)[-1] for m in _imports(p) if m.startswith("clinloop.models.lexu.")}
             for p in pkg.glob("*.py")}

    def reach(a, seen):
        for b in graph.get(a, ()):
            if b not in seen:
                seen.add(b)
                reach(b, seen)
        return seen

    cyclic = [m for m in graph if m in reach(m, set())]
    assert not cyclic, {m: graph[m] for m in cyclic}


# ---------------------------------------------------------------- click-LiteMedSAM (stub image encoder)
def test_click_litemedsam_train(tmp_path, stub_backbone):  # noqa: F811
    from clinloop.training.click_litemedsam import ClickLiteMedSAMConfig

    _write_lidc(tmp_path / "lidc.npz", n=6)
    folder = clinloop.train("click-litemedsam", tmp_path / "lidc.npz", tmp_path / "c", format="lidc", steps=2,
                            batch_size=2, max_cases=3, val_cases=2, val_clicks=2, max_iterations=1, test_fraction=0.5)
    cfg = ClickLiteMedSAMConfig.load(folder)
    assert cfg.steps == 2 and cfg.test_fraction == 0.5  # the config keeps its JSON key
    info = json.loads((folder / "data.json").read_text())
    assert info["dataset"] == str(tmp_path / "lidc.npz") and info["split"]["fractions"] == [0.5, 0.5]
    assert len(info["train_cases"]) == 3 and len(info["val_cases"]) == 2
    assert not {c.split("/")[0] for c in info["train_cases"]} & {c.split("/")[0] for c in info["val_cases"]}
    m = json.loads((folder / "metrics.json").read_text())
    assert len(m["val_dice_per_click_after"]) == 2 and all(0 <= d <= 1 for d in m["val_dice_per_click_after"])


# ---------------------------------------------------------------- MECCA's semi-supervised mode
def test_mecca_semisup_mode(tmp_path, shared_data):
    data = shared_data / "lidc" / "lidc_crops_dev.npz"
    t = clinloop.evaluate("mecca", "mecca", data, mode="semisup", out=str(tmp_path / "ss"), fractions="0.5,1",
                          iterations=1, max_minutes=1.0, limit=2, steps=2,
                          train_options={"size": 32, "width": 4, "batch": 2, "max_cases": 4, "val_cases": 0})
    assert [r["labeled_fraction"] for r in t["rows"]] == [0.5, 1.0]
    assert all(r["n_cases"] == 2 and len(r["dice_per_step"]) == 2 for r in t["rows"])
    for f in ("0.5", "1"):
        d = tmp_path / "ss" / f"mecca-labeled-{f}"
        info = json.loads((d / "data.json").read_text())
        assert info["labeled_fraction"] == float(f) and info["n_train_cases"] == 4 and info["size"] == 32
        assert json.loads((d / "results.json").read_text())["n_cases"] == 2
    assert json.loads((tmp_path / "ss" / "semisupervised.json").read_text()) == json.loads(json.dumps(t))
    with pytest.raises(TypeError, match="'sizez'"):
        clinloop.evaluate("mecca", "mecca", data, mode="semisup", out=str(tmp_path / "x"), train_options={"sizez": 1})
