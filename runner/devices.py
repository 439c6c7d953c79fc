"""Device resolution: what the user asked for, or a clear error; never a silent fallback."""
from typing import Optional

import torch

from runner.config import Device, UserError


def resolve(name: Device, index: Optional[int] = None, job_num: Optional[int] = None,
            dtype: str = "float32") -> torch.device:
    """`auto` takes cuda, then mps, then cpu. In a sweep, cuda jobs without an index spread
    one per GPU (job number modulo the visible GPUs). Checked before a run exists."""
    if name == Device.auto:
        name = Device.cuda if torch.cuda.is_available() else Device.mps if _has_mps() else Device.cpu
    if name == Device.cpu:
        return torch.device("cpu")
    if name == Device.mps:
        if not _has_mps():
            raise UserError("device.name='mps': no Apple MPS device here; use device=cpu or device=auto")
        if dtype == "float64":
            raise UserError("dtype=float64: Apple's MPS has no float64; use dtype=float32 or device=cpu")
        return torch.device("mps")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise UserError("device.name='cuda': no CUDA GPU is visible here; use device=cpu or device=auto")
    return torch.device("cuda", gpu_index(index, job_num, count))


def gpu_index(index: Optional[int], job_num: Optional[int], count: int) -> int:
    """The GPU a job uses: the given index, else job number modulo GPUs, else 0."""
    if index is not None:
        if index >= count:
            raise UserError(f"device.index={index}: only {count} CUDA GPU(s) visible (0..{count - 1})")
        return index
    return (job_num or 0) % count


def describe(device: torch.device) -> str:
    """A tag value such as `cuda:0 NVIDIA H100 80GB HBM3` or `cpu`."""
    if device.type == "cuda":
        return f"cuda:{device.index} {torch.cuda.get_device_name(device)}"
    return str(device)


def _has_mps() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
