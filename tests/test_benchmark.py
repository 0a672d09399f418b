"""``clinloop benchmark``: the seeded patient bootstrap, the options, a suite that is not
implemented failing clearly, and ``--suite ambiguity --quick`` end to end (real values
in README and JSON, the second run reusing every stage, ``--force`` recomputing one
with the same numbers)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from clinloop.evaluation.benchmark.stats import bootstrap_ci, fmt_ci


# ---------------------------------------------------------------- bootstrap
def test_bootstrap_constant_values_give_a_point_interval():
    ci = bootstrap_ci([0.7] * 5, seed=1)
    assert ci["mean"] == pytest.approx(0.7) and ci["lo"] == pytest.approx(0.7) and ci["hi"] == pytest.approx(0.7)
    assert ci["n"] == 5 and ci["n_groups"] == 5


def test_bootstrap_matches_the_normal_interval_on_large_samples():
    x = np.random.default_rng(0).normal(0.5, 0.1, 400)
    ci = bootstrap_ci(x, seed=0)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)  # 0.0098
    assert ci["mean"] == pytest.approx(x.mean())
    assert ci["hi"] - ci["lo"] == pytest.approx(2 * half, rel=0.15)
    assert ci["lo"] < x.mean() < ci["hi"]


def test_bootstrap_resamples_patients_not_slices():
    # three patients, each with 4 identical slices: the cluster bootstrap must equal the
    # case bootstrap of the three patient values (same seed -> the same draws)
    vals = np.array([0.2, 0.5, 0.9])
    cluster = bootstrap_ci(np.repeat(vals, 4), groups=np.repeat(["a", "b", "c"], 4), seed=3)
    plain = bootstrap_ci(vals, seed=3)
    assert (cluster["lo"], cluster["hi"]) == pytest.approx((plain["lo"], plain["hi"]))
    assert cluster["n"] == 12 and cluster["n_groups"] == 3
    # treating the 12 slices as independent gives a narrower (wrong) interval
    naive = bootstrap_ci(np.repeat(vals, 4), seed=3)
    assert naive["hi"] - naive["lo"] < cluster["hi"] - cluster["lo"]


def test_bootstrap_is_seeded_skips_nan_and_checks_input():
    x = [0.1, 0.4, np.nan, 0.8, 0.3]
    assert bootstrap_ci(x, seed=5) == bootstrap_ci(x, seed=5)
    assert bootstrap_ci(x, seed=5)["n"] == 4
    assert bootstrap_ci([0.3])["lo"] is None and bootstrap_ci([])["mean"] is None
    assert fmt_ci(bootstrap_ci([0.5, 0.5])) == "0.500 (0.500–0.500)"
    with pytest.raises(ValueError, match="length"):
        bootstrap_ci([0.1, 0.2], groups=["a"])


# ---------------------------------------------------------------- options and failures
def test_api_and_cli_share_the_options_dataclass(tmp_path):
    from clinloop.api import benchmark

    with pytest.raises(TypeError, match="unknown option 'quik'"):
        benchmark("ambiguity", tmp_path, tmp_path / "r", quik=True)
    with pytest.raises(ValueError, match="exclude each other"):
        benchmark("ambiguity", tmp_path, tmp_path / "r", quick=True, full=True)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        benchmark("ambiguity", tmp_path / "missing", tmp_path / "r")
    (tmp_path / "lidc").mkdir()
    with pytest.raises(ValueError, match="--jobs must be at least 1, got 0"):
        benchmark("ambiguity", tmp_path, tmp_path / "r", jobs=0)


@pytest.mark.parametrize("flags, message", [(["--threads", "-1", "--out", "r"], "--threads must be >= 1, got -1"),
                                            (["--threads", "0", "--out", "r"], "--threads must be >= 1, got 0"),
                                            (["--out", "FILE"], "--out FILE: exists and is not a folder; "
                                                                "choose another --out")])
def test_bad_threads_and_an_out_that_is_a_file_are_one_line_errors(tmp_path, capsys, flags, message):
    from clinloop.cli import main

    (tmp_path / "lidc").mkdir()
    (tmp_path / "FILE").write_text("keep")
    flags = [str(tmp_path / f) if f in ("FILE", "r") else f for f in flags]
    assert main(["benchmark", "--suite", "ambiguity", "--quick", "--data-root", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert err == f"clinloop: error: {message.replace('FILE', str(tmp_path / 'FILE'))}\n"
    assert (tmp_path / "FILE").read_text() == "keep" and not (tmp_path / "r").exists()


def test_unfinished_suite_fails_clearly_without_numbers(tmp_path, capsys, monkeypatch):
    from clinloop.cli import main
    from clinloop.evaluation.benchmark import NotImplementedSuite, meduhip

    def missing(ctx):
        raise NotImplementedSuite("not implemented yet: suite 'meduhip' (test)")

    monkeypatch.setattr(meduhip, "stages", missing)
    (tmp_path / "lidc").mkdir()
    rc = main(["benchmark", "--suite", "meduhip", "--quick", "--data-root", str(tmp_path), "--out", str(tmp_path / "r")])
    assert rc == 2
    assert "not implemented yet: suite 'meduhip'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").glob("*.json"))


# ---------------------------------------------------------------- end to end
def _numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+\.\d+", cell)]


def test_ambiguity_quick_end_to_end_resumes_and_forces(shared_data, tmp_path, capsys):
    from clinloop.cli import main

    out = tmp_path / "report"
    argv = ["benchmark", "--suite", "ambiguity", "--quick", "--data-root", str(shared_data), "--out", str(out)]
    assert main(argv) == 0
    assert "computed: ambiguity-spa, ambiguity-meduhip, ambiguity-lexu, ambiguity-ensemble" in capsys.readouterr().out
    recs = {n: json.loads((out / f"ambiguity-{n}.json").read_text()) for n in ("spa", "meduhip", "lexu", "ensemble")}
    spa = recs["spa"]["result"]
    assert spa["n_cases"] == 3 and len(spa["cases"]) == 3
    for c in spa["cases"]:
        # GED is a (squared) distance, HM-IoU a mean IoU; a clicked SPA is far from random
        assert 0 <= c["ged16"] < 1 and 0 <= c["ged100"] < 1
        assert 0.3 < c["hm_iou32"] <= 1 and 0 <= c["hm_iou16"] <= 1
    assert spa["ci"]["ged100"]["mean"] == pytest.approx(np.mean([c["ged100"] for c in spa["cases"]]))
    lexu = recs["lexu"]["result"]
    assert lexu["resolution"] == 64 and all(c["k"] == 5 and 0 <= c["hm_iou_k"] <= 1 for c in lexu["cases"])
    # the deep ensemble: its 5 members as the sample set, trained by the lexu suite's recipe into out/models
    ens = recs["ensemble"]["result"]
    assert ens["model"] == "ensemble-lidc"
    assert [c["case_id"] for c in ens["cases"]] == [c["case_id"] for c in lexu["cases"]]
    assert all(c["k"] == 5 and 0 <= c["ged_k"] <= 2 for c in ens["cases"])
    ens_cfg = json.loads((out / "models" / "ensemble-lidc" / "2-epochs" / "config.json").read_text())
    assert ens_cfg["method"] == "ensemble"
    # the README's rows hold the JSON's means, beside the published rows
    readme = (out / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| spa (`spa-lidc`"))
    cells = row.split("|")
    assert _numbers(cells[3])[0] == pytest.approx(spa["ci"]["ged16"]["mean"], abs=6e-4)
    assert _numbers(cells[4])[0] == pytest.approx(spa["ci"]["ged100"]["mean"], abs=6e-4)
    assert _numbers(cells[5])[0] == pytest.approx(spa["ci"]["hm_iou32"]["mean"], abs=6e-4)
    assert ("| CCDM (Zbinden et al. 2023) (**published**, CCDM Tab. 1) | automatic, no click | 0.212±0.002 | "
            "0.183±0.002 | 0.631±0.002 | 0.623±0.002 | LIDCv1 test split |") in readme
    assert _numbers(cells[6])[0] == pytest.approx(spa["ci"]["hm_iou16"]["mean"], abs=6e-4)
    assert "What differs:" in readme and (out / "ambiguity.png").stat().st_size > 1000
    assert "| ensemble (`ensemble-lidc`, ours) | 5 members |" in readme

    # second run: every stage reused, files untouched
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("ambiguity-*.json")}
    assert main(argv) == 0
    assert ("computed: -; reused: ambiguity-spa, ambiguity-meduhip, ambiguity-lexu, ambiguity-ensemble"
            in capsys.readouterr().out)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("ambiguity-*.json")} == mtimes

    # --force redoes the named stages, with the same numbers (seeded samples); the other stays.
    # The first run computed in 2 worker processes (--jobs defaults to 2); this one in-process,
    # one after another: the figures do not depend on --jobs
    assert main(argv + ["--force", "ambiguity-lexu", "--force", "ambiguity-spa", "--jobs", "1"]) == 0
    assert ("computed: ambiguity-spa, ambiguity-lexu; reused: ambiguity-meduhip, ambiguity-ensemble"
            in capsys.readouterr().out)
    assert json.loads((out / "ambiguity-lexu.json").read_text())["result"]["cases"] == lexu["cases"]
    assert json.loads((out / "ambiguity-spa.json").read_text())["result"]["cases"] == spa["cases"]
    assert (out / "ambiguity-spa.json").stat().st_mtime_ns != mtimes["ambiguity-spa.json"]
    assert (out / "ambiguity-meduhip.json").stat().st_mtime_ns == mtimes["ambiguity-meduhip.json"]


def test_ambiguity_published_rows_are_ccdm_table1():
    """CCDM (Zbinden et al., ICCV 2023) Table 1, LIDCv1 columns, as printed; MoSE's 0.624
    is HM-IoU₁₆ there (issue 15 had quoted it as HM-IoU₃₂), and it prints no HM-IoU₃₂."""
    from clinloop.evaluation.benchmark.ambiguity import section
    from clinloop.evaluation.benchmark.published import AMBIGUITY_PUBLISHED

    rows = {name.split(" (")[0]: vals for name, *vals, _note in AMBIGUITY_PUBLISHED}
    #                 GED₁₆          GED₁₀₀         HM-IoU₃₂       HM-IoU₁₆
    assert rows == {"Prob. U-Net": ["0.310±0.01", "0.252±0.004", "0.548±0.00", "0.552±0.00"],
                    "PHiSeg": ["0.262±0.00", "0.224±0.004", "0.595±0.00", "0.586±0.00"],
                    "SSN": ["0.259±0.00", "0.225±0.002", "0.555±0.01", "0.558±0.00"],
                    "JProb. U-Net": [None, None, "0.647±0.01", None],
                    "MoSE": ["0.218±0.003", "0.189±0.002", None, "0.624±0.004"],
                    "AB": ["0.213±0.001", None, "0.619±0.001", "0.614±0.001"],
                    "CIMD": ["0.234±0.005", None, "0.592±0.002", "0.587±0.001"],
                    "CCDM": ["0.212±0.002", "0.183±0.002", "0.631±0.002", "0.623±0.002"]}
    text = section(None, {})  # no stage run yet: the published rows and their sources alone
    assert ("| MoSE (Gao et al. 2023) (**published**, CCDM Tab. 1) | automatic, no click | 0.218±0.003 | "
            "0.189±0.002 | — | 0.624±0.004 | LIDCv1 test split |") in text
    assert "- MoSE (Gao et al. 2023): MoSE's own; its 0.624 is HM-IoU₁₆" in text
    assert "15,096 slices, 60:20:20" in text and "unchecked" not in text


def test_bootstrap_statistic_of_a_correlation():
    from clinloop.evaluation.benchmark.stats import bootstrap_statistic
    from clinloop.metrics import spearman

    rng = np.random.default_rng(1)
    x = rng.normal(size=60)
    y = x + rng.normal(scale=0.5, size=60)
    ci = bootstrap_statistic({"x": x, "y": y}, spearman, seed=2, n_boot=400)
    assert ci["mean"] == pytest.approx(spearman(x, y))
    assert ci["lo"] < ci["mean"] < ci["hi"] and 0.6 < ci["lo"] and ci["hi"] < 1
    assert ci == bootstrap_statistic({"x": x, "y": y}, spearman, seed=2, n_boot=400)


def test_lexu_quick_rows_are_the_protocol_figures(shared_data, tmp_path):
    from clinloop.api import benchmark
    from clinloop.metrics import spearman

    out = tmp_path / "report"
    res = benchmark("lexu", shared_data, out, quick=True)
    assert res["computed"] == ["lexu-riga-cup", "lexu-lidc", "lexu-riga-cup-beta-0", "lexu-riga-cup-beta-3",
                               "lexu-riga-cup-beta-10", "ensemble-riga-cup", "layer-ensemble-riga-cup",
                               "lexu-drishti-cup", "unet-drishti-cup", "lexu-qubiq", "unet-qubiq", "unet-lidc",
                               "ensemble-lidc", "lexu-riga-cup-cv"]
    rec = json.loads((out / "lexu-riga-cup.json").read_text())["result"]
    proto = json.loads((out / "raw" / "lexu-riga-cup" / "results.json").read_text())
    assert rec["n_cases"] == proto["n_cases"] == len(rec["cases"]) == 5
    assert rec["ci"]["spearman"]["mean"] == pytest.approx(proto["spearman"])
    assert rec["ci"]["spearman"]["mean"] == pytest.approx(
        spearman([c["model_sum"] for c in rec["cases"]], [c["rater_sum"] for c in rec["cases"]]))
    assert rec["ci"]["soft_dice"]["mean"] == pytest.approx(proto["soft_dice"])
    assert 0 < proto["soft_dice"] <= 1
    readme = (out / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| LEXU `lexu-riga-cup`"))
    assert _numbers(row.split("|")[6])[0] == pytest.approx(proto["soft_dice"], abs=6e-4)
    assert "| LEXU (**published**) | RIGA cup | 0.689 | 0.651 | 0.735 | 0.856 | 0.163 |" in readme
    # Table 3: each β row is a model trained with that β (2 epochs in --quick) through the same protocol
    for beta in (0, 3, 10):
        raw = out / "raw" / f"lexu-riga-cup-beta-{beta}"
        cfg = json.loads((out / "models" / f"lexu-riga-cup-beta-{beta}" / "2-epochs" / "config.json").read_text())
        assert cfg["beta"] == beta and cfg["epochs"] == 2 and cfg["size"] == 96
        b = json.loads((out / f"lexu-riga-cup-beta-{beta}.json").read_text())["result"]
        assert b["ci"]["soft_dice"]["mean"] == pytest.approx(json.loads((raw / "results.json").read_text())["soft_dice"])
    assert "| β = 0 (**published**) | -0.524 | 0.526 | 0.874 | 0.173 |" in readme
    assert "| β = 5 (ours) |" in readme and "| β = 10 (ours) |" in readme
    # rows no shipped model covers: trained by the suite, each with its method, through the same protocol
    for name, method in (("ensemble-riga-cup", "ensemble"), ("lexu-drishti-cup", "lexu"), ("unet-qubiq", "unet")):
        model_dir = out / "models" / name / "2-epochs"
        assert json.loads((model_dir / "config.json").read_text())["method"] == method
        rec = json.loads((out / f"{name}.json").read_text())["result"]
        proto = json.loads((out / "raw" / name / "results.json").read_text())
        assert rec["method"] == proto["method"] == method and rec["n_cases"] == 5
        assert rec["ci"]["soft_dice"]["mean"] == pytest.approx(proto["soft_dice"])
    drishti = json.loads((out / "models" / "lexu-drishti-cup" / "2-epochs" / "data.json").read_text())
    assert drishti["split"]["method"] == "folder_split" and len(drishti["train_cases"]) == 50
    assert all(c.startswith("Test/") for c in drishti["test_cases"]) and len(drishti["test_cases"]) == 51
    assert "| DE (deep ensemble, 5 nets) `ensemble-riga-cup` (ours) | RIGA cup |" in readme
    assert "| LEXU `lexu-drishti-cup` (ours) | Drishti-GS1 cup |" in readme
    # the LIDC U-Net: lexu-lidc's own recipe (64², batch 8, lr 1e-3; quick: 64 slices, 2 epochs), same split
    unet = json.loads((out / "models" / "unet-lidc" / "2-epochs" / "config.json").read_text())
    assert unet["method"] == "unet" and unet["size"] == 64 and unet["batch_size"] == 8 and unet["lr"] == 1e-3
    from clinloop.models.registry import resolve_model_dir

    shipped = json.loads((resolve_model_dir("lexu-lidc") / "data.json").read_text())
    mine = json.loads((out / "models" / "unet-lidc" / "2-epochs" / "data.json").read_text())
    assert mine["test_cases"] == shipped["test_cases"] and len(mine["train_cases"]) == 64
    assert "| U-Net (p(1−p)) `unet-lidc` (ours) | lidc |" in readme
    assert "| DE (deep ensemble, 5 nets) `ensemble-lidc` (ours) | lidc |" in readme
    # RIGA cup cross-validated: 4 folds partition the 47 photos, each held out once per method
    cv = json.loads((out / "lexu-riga-cup-cv.json").read_text())["result"]
    folds = json.loads((out / "models" / "lexu-riga-cup-cv" / "2-epochs" / "folds.json").read_text())
    assert sorted(c for f in folds for c in f) == sorted(set(c for f in folds for c in f)) and len(sum(folds, [])) == 47
    for m in ("lexu", "unet"):
        rows = cv["methods"][m]["cases"]
        assert sorted(r["case_id"] for r in rows) == sorted(sum(folds, []))
        assert all(r["case_id"] in folds[r["fold"]] for r in rows)
        assert cv["methods"][m]["ci"]["spearman"]["mean"] == pytest.approx(
            spearman([r["model_sum"] for r in rows], [r["rater_sum"] for r in rows]))
    assert "### RIGA cup, cross-validated" in readme
    # spa Table 1's non-interactive U-Net row reuses that model (no second training) and scores its
    # thresholded prediction against the spa protocol's users' targets on SPA's held-out slices
    from clinloop.data import load_dataset
    from clinloop.evaluation.benchmark import spa as spa_suite
    from clinloop.evaluation.benchmark.base import BenchmarkOptions
    from clinloop.evaluation.benchmark.runner import Context
    from clinloop.interaction.users import PreferredRaterUser
    from clinloop.metrics import dice
    from clinloop.models.lexu.model import load_lexu

    weights = out / "models" / "unet-lidc" / "2-epochs" / "weights.pt"
    before = weights.stat().st_mtime_ns
    ctx = Context(BenchmarkOptions(suite="spa", data_root=str(shared_data), out=str(out), quick=True), shared_data,
                  out, "quick", 0)
    got = spa_suite._noninteractive("unet")(ctx)
    assert weights.stat().st_mtime_ns == before and got["model"] == "unet-lidc" and got["n_cases"] >= 1
    ds = load_dataset(shared_data / "lidc" / "lidc_crops_dev.npz")
    pos = {c: k for k, c in enumerate(ds.case_ids)}
    from clinloop.evaluation.benchmark.cases import heldout_lidc

    order = {ds.case_ids[i]: p for p, i in enumerate(heldout_lidc(ds, per_nodule=1, limit=3))}
    pred = load_lexu(weights.parent)
    for c in got["cases"]:
        s = ds[pos[c["case_id"]]]
        target = PreferredRaterUser.from_raters(s.masks, seed=order[c["case_id"]], rater_valid=s.rater_valid).target
        assert c["dice_1"] == pytest.approx(dice(pred.predict(s.image)[0] > 0.5, target))


def test_suite_all_runs_the_others_then_reports_what_is_missing(tmp_path, capsys, monkeypatch):
    """The runner on stand-in suites (no models): every implemented suite's stages run and
    land in the README, the missing one is named there, and the exit status is 2."""
    from clinloop.cli import main
    from clinloop.evaluation.benchmark import SUITES, NotImplementedSuite, Stage
    from clinloop.evaluation.benchmark.base import suite_module

    calls = []
    for name in SUITES:
        mod = suite_module(name)
        if name == "mecca":
            monkeypatch.setattr(mod, "stages", lambda ctx: (_ for _ in ()).throw(NotImplementedSuite("not implemented yet: x")))
            continue

        def stages(ctx, name=name):
            return [Stage(f"{name}-a", lambda c, name=name: calls.append(name) or {"value": len(name) / 10})]

        monkeypatch.setattr(mod, "stages", stages)
        monkeypatch.setattr(mod, "section", lambda ctx, recs, name=name: f"## {name}: {recs[name + '-a']['result']['value']}\n")
        monkeypatch.setattr(mod, "figures", lambda ctx, recs: [], raising=False)
    (tmp_path / "lidc").mkdir()
    # --jobs 1: the patched stages live in this process only (a spawned worker re-imports the suites)
    argv = ["benchmark", "--suite", "all", "--data-root", str(tmp_path), "--out", str(tmp_path / "r"), "--jobs", "1"]
    assert main(argv) == 2
    assert "not implemented yet: x" in capsys.readouterr().err
    readme = (tmp_path / "r" / "README.md").read_text()
    assert "## spa: 0.3" in readme and "## ambiguity: 0.9" in readme and "**not implemented yet: x**" in readme
    assert sorted(calls) == sorted(set(SUITES) - {"mecca"})
    assert main(argv + ["--force", "spa"]) == 2  # a suite name forces its stages; the rest are reused
    assert calls.count("spa") == 2 and calls.count("lexu") == 1
    assert main(argv + ["--full"]) == 2  # other sizes: every stage is stale and recomputed
    assert calls.count("lexu") == 2


def test_jobs_send_the_timing_suite_to_run_alone(tmp_path, monkeypatch):
    """With --jobs 2 the accuracy stages go to the worker pool; the speed suite's (ALONE: it
    times things) run afterwards in this process, one at a time."""
    from clinloop.evaluation.benchmark import SUITES, Stage, runner
    from clinloop.evaluation.benchmark.base import BenchmarkOptions, suite_module

    order = []
    for name in SUITES:
        mod = suite_module(name)
        monkeypatch.setattr(mod, "stages", lambda ctx, name=name: [
            Stage(f"{name}-{k}", lambda c, name=name, k=k: order.append(f"{name}-{k}") or {"v": 1}) for k in "ab"])
        monkeypatch.setattr(mod, "section", lambda ctx, recs: "")
        monkeypatch.setattr(mod, "figures", lambda ctx, recs: [], raising=False)
    pooled = []

    def fake_pool(options, due, verbose):
        pooled.extend(st.name for _, st in due)
        for suite, st in due:  # as the workers would, but here
            runner.run_stage(runner.Context(options, tmp_path, tmp_path / "r", "default", 0), suite, st, True)

    monkeypatch.setattr(runner, "_run_parallel", fake_pool)
    (tmp_path / "r").mkdir()
    res = runner.run_benchmark(BenchmarkOptions(suite="all", data_root=str(tmp_path), out=str(tmp_path / "r"), jobs=2))
    assert "speed-a" not in pooled and "spa-a" in pooled and len(pooled) == 2 * (len(SUITES) - 1)
    assert order[-2:] == ["speed-a", "speed-b"]  # after every pooled stage
    assert res["computed"] == [f"{n}-{k}" for n in SUITES for k in "ab"]  # reported in plan order
