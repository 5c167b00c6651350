"""The shared library liblsr through ctypes: its loss functions, structs and statuses.

The library is looked for, in this order: the file named by the LSR_LIBRARY
environment variable; a copy inside this package (what `make python` installs);
the library directory `pkg-config --variable=libdir lsr` names; the linker's
search path (`ctypes.util.find_library`).
"""
import ctypes
import ctypes.util
import os
import subprocess

CONVENTIONS = {"all": 0, "others": 1}
REDUCTIONS = {"mean": 0, "sum": 1, "none": 2}
FLOAT32, BFLOAT16 = 0, 1  # lsr_dtype


class LossOptions(ctypes.Structure):
    """lsr_loss_options of lsr/loss.h, field for field."""
    _fields_ = [
        ("smoothing", ctypes.c_float),
        ("convention", ctypes.c_int),
        ("prior", ctypes.POINTER(ctypes.c_float)),
        ("class_weights", ctypes.POINTER(ctypes.c_float)),
        ("ignore_index", ctypes.c_int64),
        ("reduction", ctypes.c_int),
        ("z_loss", ctypes.c_float),
        ("threads", ctypes.c_int),
        ("isa", ctypes.c_int),
        ("logits_dtype", ctypes.c_int),
        ("grad_dtype", ctypes.c_int),
    ]


class LossStats(ctypes.Structure):
    """lsr_loss_stats of lsr/loss.h."""
    _fields_ = [
        ("valid_rows", ctypes.c_int64),
        ("top1_hits", ctypes.c_int64),
        ("label_ce", ctypes.c_double),
        ("prior_ce", ctypes.c_double),
        ("mean_max_prob", ctypes.c_double),
        ("mean_lse", ctypes.c_double),
    ]


def _candidates():
    env = os.environ.get("LSR_LIBRARY")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    for name in sorted(os.listdir(here)):
        if name.startswith("liblsr.so"):
            yield os.path.join(here, name)
    try:
        libdir = subprocess.run(["pkg-config", "--variable=libdir", "lsr"], capture_output=True,
                                text=True, check=True).stdout.strip()
        if libdir:
            yield os.path.join(libdir, "liblsr.so")
    except (OSError, subprocess.CalledProcessError):
        pass
    found = ctypes.util.find_library("lsr")
    if found:
        yield found


def check_abi(lib):
    """ImportError unless lib is the library these structs mirror (a library of another
    version would read or write past them, or lack functions)."""
    name = getattr(lib, "_name", "liblsr")
    for fn_name, struct in (("lsr_loss_options_size", LossOptions),
                            ("lsr_loss_stats_size", LossStats)):
        size_fn = getattr(lib, fn_name, None)
        if size_fn is None:
            raise ImportError(f"lsr: {name} has no {fn_name}: it is older than this package; "
                              "rebuild and reinstall both (`make python`)")
        size_fn.restype = ctypes.c_size_t
        size_fn.argtypes = []
        if size_fn() != ctypes.sizeof(struct):
            raise ImportError(f"lsr: {name} has a {struct.__name__} of {size_fn()} bytes, this "
                              f"package one of {ctypes.sizeof(struct)}: they are of different "
                              "versions; rebuild and reinstall both (`make python`)")


def load():
    """The library, its functions' argument and result types declared."""
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            break
        except OSError as e:
            tried.append(f"{path} ({e})")
    else:
        raise ImportError("lsr: cannot find liblsr.so (tried: " + (", ".join(tried) or "nothing")
                          + "); run `make python`, or set LSR_LIBRARY to its path")
    check_abi(lib)
    f32 = ctypes.POINTER(ctypes.c_float)
    i64 = ctypes.POINTER(ctypes.c_int64)
    stats = ctypes.POINTER(LossStats)
    opts = ctypes.POINTER(LossOptions)
    for name, target in (("lsr_cross_entropy", i64), ("lsr_cross_entropy_soft", f32),
                         ("lsr_cross_entropy_reference", i64),
                         ("lsr_cross_entropy_soft_reference", f32)):
        fn = getattr(lib, name)
        fn.argtypes = [f32, ctypes.c_void_p, stats, ctypes.c_void_p, target, ctypes.c_int64,
                       ctypes.c_int64, ctypes.c_int64, opts]
        fn.restype = ctypes.c_int
    fn = lib.lsr_linear_cross_entropy
    fn.argtypes = [f32, f32, f32, f32, stats, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                   f32, i64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, f32, opts]
    fn.restype = ctypes.c_int
    lib.lsr_status_name.restype = ctypes.c_char_p
    lib.lsr_status_name.argtypes = [ctypes.c_int]
    lib.lsr_last_error.restype = ctypes.c_char_p
    lib.lsr_last_error.argtypes = []
    lib.lsr_loss_options_default.restype = LossOptions
    lib.lsr_loss_options_default.argtypes = []
    return lib


lib = load()


def status_name(status):
    """The C library's name of a status, e.g. "LSR_ERROR_LABEL"."""
    return lib.lsr_status_name(status).decode()
