"""Put another P-Net in front of a trained interactive MECCA model (its start p^(0)).

    python benchmarks/mecca_swap_pnet.py --model mecca-atrium --pnet runs/pnet-atrium-j8 --out runs/mecca-atrium-j8
    clinloop evaluate --protocol mecca --method mecca --model runs/mecca-atrium-j8 \\
        --data ../shared/data/left_atrium --steps 5 --seed 0 --per-case --out swapped.json

See :mod:`clinloop.training.mecca_swap` (the policy is not retrained; both P-Nets must have
been trained on the same patients).
"""
from __future__ import annotations

import argparse


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="interactive model (folder or shipped name) trained with --init-model")
    p.add_argument("--pnet", required=True, help="the P-Net (mecca-unet folder or shipped name) to start from")
    p.add_argument("--out", required=True, help="model folder to write")
    a = p.parse_args(argv)
    from clinloop.training.mecca_swap import swap_pnet

    print(f"wrote {swap_pnet(a.model, a.pnet, a.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
