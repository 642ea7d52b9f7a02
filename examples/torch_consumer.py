"""A PyTorch consumer: frames of a key as tensors, with no extra copy.

`read(out=)` copies each frame into one pinned-in-RAM numpy buffer that a
tensor shares (`torch.from_numpy`), so the tensor always holds the latest
frame and nothing is allocated per frame. Needs torch installed.

    python examples/torch_consumer.py --key camera --frames 10
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from shmimage import SharedImage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", default="camera")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    with SharedImage(args.key) as img:
        seen = img.wait(timeout=args.timeout, after=0)
        buffer = np.empty_like(img.read())
        tensor = torch.from_numpy(buffer)          # shares buffer's memory
        for n in range(args.frames):
            if n:
                seen = img.wait(timeout=args.timeout, after=seen)
            img.read(out=buffer)
            chw = tensor.permute(2, 0, 1).float() / 255.0   # (C, H, W) in [0, 1]
            print(f"generation {seen} tensor {tuple(chw.shape)} mean {chw.mean().item():.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
