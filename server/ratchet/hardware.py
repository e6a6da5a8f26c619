"""Where an experiment ran: CPU model, GPU models and driver. With a fixed time budget the
metric depends on the hardware, so every result records it."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import socket
import subprocess
from typing import Any


def parse_nvidia_smi(output: str) -> list[dict[str, str]]:
    """Rows of `nvidia-smi --query-gpu=index,name,driver_version --format=csv,noheader`."""
    gpus = []
    for line in output.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) >= 3 and parts[0].isdigit():
            gpus.append({"index": parts[0], "name": parts[1], "driver": parts[2]})
    return gpus


NVIDIA_QUERY = ["nvidia-smi", "--query-gpu=index,name,driver_version", "--format=csv,noheader"]


@functools.cache
def local_gpus() -> tuple[dict[str, str], ...]:
    if not shutil.which("nvidia-smi"):
        return ()
    try:
        output = subprocess.run(
            NVIDIA_QUERY, capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(parse_nvidia_smi(output))


@functools.cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(gpu: int | None, host: str = "local") -> dict[str, Any]:
    """The hardware one local slot runs on."""
    gpus = [g for g in local_gpus() if gpu is None or g["index"] == str(gpu)]
    used = gpus if gpu is not None else []
    return {
        "host": socket.gethostname() if host == "local" else host,
        "cpu": cpu_model(),
        "cpus": os.cpu_count() or 1,
        "gpu": used[0]["name"] if used else None,
        "gpu_count": len(used),
        "driver": used[0]["driver"] if used else None,
    }


def same_hardware(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two results can be compared directly: the same GPU model (or both CPU)."""
    if a.get("gpu") or b.get("gpu"):
        return a.get("gpu") == b.get("gpu")
    return a.get("cpu") == b.get("cpu")
