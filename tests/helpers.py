"""Helpers shared by the tests: tiny but real MNIST-format (IDX) files, PNG folders, specs for them, the CLI.

A plain module (not conftest) so test files can import it by one unambiguous name."""

from __future__ import annotations

import gzip
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
REAL_MNIST = ROOT / "data"


def write_idx(path: Path, array: torch.Tensor) -> None:
    """An IDX file as MNIST's are written: magic (0, 0, uint8 type 0x08, ndim), big-endian dims, bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    path.write_bytes(header + array.to(torch.uint8).contiguous().numpy().tobytes())


def make_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable fake digits: class k lights up row band k (plus noise), so a model can reach ~100%."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=g)]
    images = torch.randint(0, 60, (n, 28, 28), generator=g)
    for k in range(10):
        images[labels == k, 2 + 2 * k: 4 + 2 * k, 4:24] = 255
    return images.to(torch.uint8), labels.to(torch.uint8)


def make_tiny_mnist(root: Path, train: int = 600, test: int = 200) -> Path:
    raw = root / "MNIST" / "raw"
    for prefix, n, seed in (("train", train, 1), ("t10k", test, 2)):
        images, labels = make_digits(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def tiny_spec(tmp_path: Path, data_root: Path, **sections: dict) -> Path:
    """An experiment file for the tiny data: small and quick, everything else as the spec defaults."""
    spec = {"name": "tiny", "seed": 0,
            "data": {"root": str(data_root), "verify": False, "batch_size": 50, "test_batch_size": 64},
            "model": {"hidden": [32]}, "optim": {"name": "sgd", "lr": 0.1},
            "train": {"epochs": 2, "device": "cpu", "log_every": 4, "samples": 8}}
    for name, values in sections.items():
        spec[name] = {**spec.get(name, {}), **values} if isinstance(values, dict) else values
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(spec))
    return path


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m runner ARGS` as a user runs it, from the project root."""
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


COLOURS = {"red": (230, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 220)}


def write_own_idx(root: Path, shape: tuple[int, ...], classes: int, gz: bool = False) -> dict[str, torch.Tensor]:
    """train/t10k images of `shape` (H, W or C, H, W) and labels 0..classes-1, as IDX files in `root`."""
    g = torch.Generator().manual_seed(0)
    written = {}
    kind = "idx3" if len(shape) == 2 else "idx4"
    for prefix, n in (("train", 60), ("t10k", 30)):
        images = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
        labels = torch.arange(n) % classes
        for name, array in ((f"{prefix}-images-{kind}-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            write_idx(root / name, array)
            if gz:
                path = root / name
                path.with_name(name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
                path.unlink()
        written[prefix] = images
    return written


def write_png_folder(root: Path, side: tuple[int, int] = (12, 10), grey: bool = False, per_class: int = 6) -> Path:
    """root/{train,test}/<colour>/*.png: each class a flat colour plus noise, so it can be learnt."""
    from PIL import Image

    g = torch.Generator().manual_seed(1)
    for split, n in (("train", per_class), ("test", per_class // 2)):
        for name, rgb in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                image = torch.tensor(rgb, dtype=torch.int16).view(3, 1, 1).expand(3, *side).clone()
                image += torch.randint(-20, 20, (3, *side), generator=g, dtype=torch.int16)
                image = image.clamp(0, 255).to(torch.uint8)
                array = (image[0] if grey else image.permute(1, 2, 0)).numpy()
                Image.fromarray(array).save(folder / f"{i}.png")
    return root


ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b" " * 1000


class Trickle:
    """Accepts every connection, reads the request, then sends a valid answer one byte a second."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.bytes_sent = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(1 << 16)
                for byte in ANSWER:
                    if self.stopped.wait(1.0):
                        return
                    conn.sendall(bytes([byte]))
                    self.bytes_sent += 1
            except OSError:
                return

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()
