"""One config save/load (clinloop.config_io) for every config class; shipped configs load."""
from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest

from clinloop.config_io import config_from_dict, load_config, save_config
from clinloop.models.lexu.config import LexuConfig
from clinloop.models.mecca.config import MECCAConfig
from clinloop.models.spa.config import SPAConfig
from clinloop.training.click_litemedsam import ClickLiteMedSAMConfig

MODELS = Path(__file__).resolve().parents[1] / "src" / "clinloop" / "assets" / "models"
CLASSES = {"spa": SPAConfig, "meduhip": SPAConfig, "lexu": LexuConfig, "mecca": MECCAConfig,
           "mecca-no-confidence": MECCAConfig, "interactive-cnn": MECCAConfig, "mecca-unet": MECCAConfig,
           "click-litemedsam": ClickLiteMedSAMConfig}


@pytest.mark.parametrize("cfg", [SPAConfig(latent_dim=4), LexuConfig(size=64, crop=0.5), MECCAConfig(ndim=3, width=8),
                                 ClickLiteMedSAMConfig(steps=7)])
def test_round_trip_and_file_format(tmp_path, cfg):
    p = save_config(cfg, tmp_path / "config.json")
    text = p.read_text()
    assert text.endswith("\n") and json.loads(text) == json.loads(json.dumps(dataclasses.asdict(cfg)))
    assert load_config(type(cfg), p) == cfg
    assert [q.name for q in tmp_path.iterdir()] == ["config.json"]  # no temporary file left behind


def test_unknown_key_is_an_error_naming_key_and_file(tmp_path):
    p = tmp_path / "config.json"
    d = dataclasses.asdict(MECCAConfig())
    d["widht"] = 3
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"config\.json: unknown key\(s\) 'widht' for MECCAConfig"):
        MECCAConfig.load(p)
    with pytest.raises(ValueError, match="'bogus'"):
        LexuConfig.load(_write(tmp_path / "l", {**dataclasses.asdict(LexuConfig()), "bogus": 1}))
    with pytest.raises(ValueError, match="cannot read"):
        SPAConfig.load(_write_text(tmp_path / "s" / "config.json", "{not json"))


def _write(folder: Path, d: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(d))
    return folder


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def test_legacy_keys_are_renamed_explicitly():
    @dataclasses.dataclass
    class C:
        LEGACY_KEYS = {"old": "new", "gone": None}
        new: int = 0

    assert config_from_dict(C, {"old": 3, "gone": 1}) == C(new=3)
    with pytest.raises(ValueError, match="both 'old' and its new name 'new'"):
        config_from_dict(C, {"old": 3, "new": 4})


@pytest.mark.parametrize("name", sorted(p.name for p in MODELS.iterdir() if (p / "config.json").is_file()))
def test_every_shipped_config_loads_strictly(name):
    d = json.loads((MODELS / name / "config.json").read_text())
    cls = CLASSES[d["method"]]
    cfg = config_from_dict(cls, d, MODELS / name / "config.json")  # unknown keys would raise
    assert cfg.method == d["method"]
    from clinloop.models.registry import load_model

    assert load_model(name) is not None


def test_tinyvit_cache_bypass_is_per_thread():
    """Timing bypasses the TinyViT caches in its own thread only (the server runs two workers)."""
    from clinloop.models.lexu.tinyvit import TinyViTFeatures

    f = TinyViTFeatures.__new__(TinyViTFeatures)  # no encoder needed for the flags
    f.memory, f.memory_capacity = {}, 4
    seen = {}
    inside, release = threading.Event(), threading.Event()

    def timer():
        with f.uncached():
            seen["timer"] = f.enabled
            inside.set()
            release.wait(5)

    t = threading.Thread(target=timer)
    t.start()
    inside.wait(5)
    seen["other"] = f.enabled  # while the timer thread is inside uncached()
    release.set()
    t.join()
    assert seen == {"timer": False, "other": True} and f.enabled
    f.reserve(10)
    f.reserve(2)
    assert f.memory_capacity == 10  # only grows
