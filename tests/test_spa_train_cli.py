"""``clinloop train --method spa`` end to end on a tiny synthetic LIDC-layout file: ``--split-seed``
decouples the patient split from the training seed (so a second training seed is evaluated on the
same held-back patients); a trained folder is never overwritten; bad values are one-line errors."""
import json

import pytest

from clinloop.cli import main
from tests.test_spa_protocol import _write_lidc, stub_backbone  # noqa: F401 - fixture

CHEAP = ["--val-fraction", "0.5", "--per-nodule", "1", "--cond-width", "8", "--user-iterations", "1",
         "--train-samples", "2"]


def _args(tmp_path, name, *extra):
    return ["train", "--method", "spa", "--data", str(tmp_path / "lidc.npz"), "--format", "lidc",
            "--out", str(tmp_path / name), "--steps", "1", *CHEAP, *extra]


def _train_ids(tmp_path, name, *extra):
    out = tmp_path / name
    assert main(_args(tmp_path, name, *extra)) == 0
    info = json.loads((out / "data.json").read_text())
    return info["train_case_ids"], info["split"]["seed"]


def test_split_seed_fixes_the_patient_split(tmp_path, stub_backbone):  # noqa: F811
    _write_lidc(tmp_path / "lidc.npz", n=10)
    ids0, s0 = _train_ids(tmp_path, "a", "--seed", "0")
    ids1, s1 = _train_ids(tmp_path, "b", "--seed", "1")
    assert (s0, s1) == (0, 1)
    assert ids0 and ids1 and ids0 != ids1  # the split follows --seed by default
    ids1_fixed, s = _train_ids(tmp_path, "c", "--seed", "1", "--split-seed", "0")
    assert s == 0 and ids1_fixed == ids0


def test_a_trained_folder_is_refused_and_resuming_a_finished_one_does_nothing(tmp_path, stub_backbone,  # noqa: F811
                                                                             capsys):
    _write_lidc(tmp_path / "lidc.npz", n=6)
    _train_ids(tmp_path, "m")
    out = tmp_path / "m"
    before = {f: (out / f).read_bytes() for f in ("weights.pt", "data.json", "checkpoint.pt", "train_log.csv")}
    capsys.readouterr()
    assert main(_args(tmp_path, "m")) == 2  # no --resume: the trained model is kept
    err = capsys.readouterr().err
    assert f"{out}: already holds a trained model (weights.pt); choose another --out" in err
    assert main(_args(tmp_path, "m", "--resume")) == 0  # its checkpoint is at --steps: nothing to train
    assert f"{out}: training already finished (step 1 of --steps 1); nothing to resume" in capsys.readouterr().err
    assert {f: (out / f).read_bytes() for f in before} == before  # not a byte rewritten
    (out / "checkpoint.pt").unlink()  # a finished folder without its checkpoint: the same
    assert main(_args(tmp_path, "m", "--resume")) == 0
    assert "training already finished; nothing to resume" in capsys.readouterr().err
    assert (out / "weights.pt").read_bytes() == before["weights.pt"]
    (out / "checkpoint.pt").write_bytes(before["checkpoint.pt"])  # --resume with more steps continues
    assert main(_args(tmp_path, "m", "--resume", "--steps", "2")) == 0
    info = json.loads((out / "data.json").read_text())
    assert info["steps"] == 2 and [r["step"] for r in info["last_rows"]] == [1]  # only the second step ran
    assert (out / "weights.pt").read_bytes() != before["weights.pt"]


def test_data_without_rater_masks_is_named(tmp_path, stub_backbone, capsys):  # noqa: F811
    from tests.test_spa_protocol import _no_masks

    data = _no_masks(tmp_path / "imgs")
    assert main(["train", "--method", "spa", "--data", str(data), "--out", str(tmp_path / "m"), "--steps", "1"]) == 2
    assert capsys.readouterr().err.endswith(f"clinloop: error: {data}: the dataset has no rater masks (case 'c1' "
                                            "has none, nor any other); SPA training needs cases with rater masks\n")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("flags, message", [
    (["--steps", "0"], "--steps must be >= 1 (0 only with --init), got 0"),
    (["--steps", "-3"], "--steps must be >= 1 (0 only with --init), got -3"),
    (["--threads", "-1"], "--threads must be >= 1, got -1"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--lr", "0"], "--lr must be > 0, got 0.0"),
    (["--lr=-1e-4"], "--lr must be > 0, got -0.0001"),
    (["--per-nodule", "0"], "--per-nodule must be >= 1, got 0"),
    (["--device", "banana"], "--device 'banana' is not a device name (cpu, cuda, cuda:1, mps)"),
])
def test_bad_values_are_one_line_errors_before_any_work(tmp_path, capsys, flags, message):
    args = ["train", "--method", "spa", "--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "m"), *flags]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("clinloop: error: ") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m").exists()
