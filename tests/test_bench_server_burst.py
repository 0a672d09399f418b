"""The pure helpers of benchmarks/bench_server_burst.py (the benchmark itself needs a live server)."""
import pytest

from tests._benchmarks import load_script


def _mod():
    return load_script("bench_server_burst")


def test_parse_configs():
    m = _mod()
    assert m.parse_configs("2:1,16:2") == [(2, 1), (16, 2)]
    assert m.parse_configs(" 1:2 ") == [(1, 2)]
    for bad in ("2", "0:1", "2:0", "a:1", "2:1,"):
        with pytest.raises(ValueError):
            m.parse_configs(bad)


def test_summarise_burst_ratios_to_idle_median():
    m = _mod()
    idle = [{"seconds": s, "model": s - 0.01, "queue": 0.0, "total": s} for s in (0.1, 0.2, 0.3)]
    burst = [{"seconds": 0.4, "model": 0.19, "queue": 0.2, "total": 0.4},
             {"seconds": 2.0, "model": 0.38, "queue": 1.6, "total": 1.99}]
    r = m.summarise_burst(idle, burst)
    assert r["idle"] == {"n": 3, "wall_median": 0.2, "model_median": 0.19}
    b = r["burst"]
    assert b["n"] == 2 and b["wall"] == [1.2, 2.0]
    assert b["ratio"] == [6.0, 10.0] and b["ratio_model"] == [1.5, 2.0]
    assert b["queue"] == [0.9, 1.6] and b["overhead"] == pytest.approx([0.01, 0.01])
