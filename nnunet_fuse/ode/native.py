"""solve_kernels.c built on first use and called through ctypes: one step of the CPU solve in one pass over memory.

The C file needs no PyTorch or Python headers, so the system C compiler (``$CC``, else ``cc``) builds it in about a
second. The library is cached under ``$NNUNET_FUSE_CACHE`` (default ``$XDG_CACHE_HOME/nnunet_fuse`` or
``~/.cache/nnunet_fuse``), named by a hash of the source and the compiler command, and written atomically, so
concurrent processes (DDP) are safe. Where it cannot be built (no compiler, no writable folder), a warning says so
once and the solve keeps its PyTorch operations: same results, slower.

Threads: built with ``-fopenmp``, the library needs libgomp.so.1, and the dynamic loader resolves that to the libgomp
PyTorch has already loaded (its wheels ship one under that name), so the kernels run on PyTorch's own OpenMP threads,
``torch.get_num_threads()`` of them. A pool of threads of our own was slower: PyTorch's OpenMP workers keep spinning
for a while after each of its operations and took the cores from it. A compiler without OpenMP gives a serial build.
Only float32 / float64 CPU tensors, contiguous, all of one shape.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import List, Optional, Sequence

import torch

SOURCE = Path(__file__).with_name("solve_kernels.c")
FLAGS = ["-O3", "-std=c99", "-shared", "-fPIC"]
OPENMP = "-fopenmp"
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_C_TYPE = {torch.float32: ctypes.c_float, torch.float64: ctypes.c_double}
_POINTER = ctypes.c_void_p


def cache_folder() -> Path:
    if os.environ.get("NNUNET_FUSE_CACHE"):
        return Path(os.environ["NNUNET_FUSE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nnunet_fuse"


def build(folder: Path, compiler: Sequence[str], flags: Sequence[str] = (*FLAGS, OPENMP)) -> Path:
    """Compile SOURCE with flags into folder (if not there yet); returns the library's path. Raises on failure."""
    command = [*compiler, *flags]
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), " ".join(command).encode(),
                                     platform.machine().encode()])).hexdigest()[:16]
    library = folder / f"solve_kernels_{key}.so"
    if library.exists():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        partial = Path(scratch) / library.name
        result = subprocess.run([*command, str(SOURCE), "-o", str(partial)], capture_output=True, text=True,
                                timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()[-2000:]}")
        os.replace(partial, library)
    return library


def build_with_or_without_openmp(folder: Path, compiler: Sequence[str]) -> Path:
    try:
        return build(folder, compiler)
    except RuntimeError:  # a compiler without OpenMP: the same kernels, serial
        return build(folder, compiler, FLAGS)


class SolveKernels:
    """forward_step / backward_step of solve_kernels.c on torch tensors (see the C file for the maths)."""

    def __init__(self, library: ctypes.CDLL):
        self.library = library
        long, int_, pointer = ctypes.c_long, ctypes.c_int, _POINTER
        for dtype, suffix in _SUFFIX.items():
            forward = getattr(library, f"forward_step_{suffix}")
            backward = getattr(library, f"backward_step_{suffix}")
            forward.argtypes = [long, pointer, int_, pointer, pointer, pointer, int_, pointer, pointer, pointer,
                                pointer, pointer]
            backward.argtypes = [long, pointer, pointer, int_, pointer, pointer, pointer, _C_TYPE[dtype], pointer,
                                 int_, pointer, pointer, pointer, pointer]
            forward.restype = backward.restype = None
        library.openmp_threads.argtypes, library.openmp_threads.restype = [], ctypes.c_int

    def threads(self) -> int:
        """The OpenMP threads a step runs on (1: a serial build); PyTorch's thread count when it shares PyTorch's
        OpenMP runtime."""
        return self.library.openmp_threads()

    @staticmethod
    def supports(x: torch.Tensor) -> bool:
        return x.device.type == "cpu" and x.dtype in _SUFFIX

    def forward_step(self, z: torch.Tensor, history: Sequence[torch.Tensor], ab: Sequence[float],
                     g: Optional[torch.Tensor], am: Sequence[float], z_out: torch.Tensor,
                     f_out: Optional[torch.Tensor], mask_p: Optional[torch.Tensor],
                     mask_c: Optional[torch.Tensor]) -> None:
        """z_out (may be z), f_out, mask_p, mask_c as solve_kernels.c's forward_step; history newest first,
        ab / am the Adams–Bashforth / –Moulton coefficients times -h (am empty: no corrector), g None: last step."""
        _check(z, [z, *history, g, z_out, f_out], [mask_p, mask_c])
        scalar = _C_TYPE[z.dtype]
        function = getattr(self.library, f"forward_step_{_SUFFIX[z.dtype]}")
        hist = (_POINTER * len(history))(*[x.data_ptr() for x in history])
        function(z.numel(), z.data_ptr(), len(history), hist, (scalar * len(ab))(*ab), _address(g), len(am),
                 (scalar * max(len(am), 1))(*am), z_out.data_ptr(), _address(f_out), _address(mask_p),
                 _address(mask_c))

    def backward_step(self, y_adjoint: torch.Tensor, grad: Optional[torch.Tensor], fresh: bool,
                      f_adjoint: Optional[torch.Tensor], mask_c: Optional[torch.Tensor],
                      mask_p: Optional[torch.Tensor], scale: float, g_adjoint: Optional[torch.Tensor],
                      adjoints: Sequence[torch.Tensor], adjoints_fresh: Sequence[bool], ca: Sequence[float],
                      cp: Sequence[float]) -> None:
        """y_adjoint, g_adjoint and adjoints updated as solve_kernels.c's backward_step."""
        _check(y_adjoint, [y_adjoint, grad, f_adjoint, g_adjoint, *adjoints], [mask_c, mask_p])
        scalar = _C_TYPE[y_adjoint.dtype]
        function = getattr(self.library, f"backward_step_{_SUFFIX[y_adjoint.dtype]}")
        k = max(len(adjoints), 1)
        function(y_adjoint.numel(), y_adjoint.data_ptr(), _address(grad), int(fresh), _address(f_adjoint),
                 _address(mask_c), _address(mask_p), scale, _address(g_adjoint), len(adjoints),
                 (_POINTER * k)(*[x.data_ptr() for x in adjoints]), (ctypes.c_int * k)(*map(int, adjoints_fresh)),
                 (scalar * k)(*ca), (scalar * k)(*cp))


def _address(x: Optional[torch.Tensor]) -> Optional[int]:
    return None if x is None else x.data_ptr()


def _check(like: torch.Tensor, arrays: List[Optional[torch.Tensor]], masks: List[Optional[torch.Tensor]]) -> None:
    """The C code reads raw memory: every array must be a contiguous CPU tensor of like's shape and dtype, every
    mask the same but bool."""
    for x, dtype in [(x, like.dtype) for x in arrays] + [(m, torch.bool) for m in masks]:
        if x is not None and (x.shape != like.shape or x.dtype != dtype or not x.is_contiguous() or
                              x.device.type != "cpu"):
            raise ValueError(f"solve kernels need contiguous CPU tensors of shape {tuple(like.shape)} and dtype "
                             f"{dtype}, got shape {tuple(x.shape)}, dtype {x.dtype}, device {x.device}, "
                             f"contiguous {x.is_contiguous()}")


@functools.lru_cache(maxsize=None)
def _load(folder: str, compiler: str) -> Optional[SolveKernels]:
    try:
        library = build_with_or_without_openmp(Path(folder), shlex.split(compiler))
        return SolveKernels(ctypes.CDLL(str(library)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        warnings.warn(f"nnunet_fuse could not build its C kernels for FuseUNet's CPU solve ({error}); the solve "
                      f"uses PyTorch operations instead (same results, slower on the CPU). Install a C compiler, or "
                      f"set CC to one, or NNUNET_FUSE_CACHE to a writable folder.", RuntimeWarning, stacklevel=3)
        return None


def solve_kernels(like: torch.Tensor) -> Optional[SolveKernels]:
    """The kernels for tensors like `like` (float32/float64 on the CPU), built on first use; None where they do not
    apply or cannot be built (warned once)."""
    if not SolveKernels.supports(like):
        return None
    return _load(str(cache_folder()), os.environ.get("CC") or "cc")
