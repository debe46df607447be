"""Read a PyTorch checkpoint into numpy arrays without importing torch.

Supports the two on-disk formats torch.save has used:
- the legacy stream format (torch < 1.6): a sequence of pickles (magic number, protocol version,
  system info, the object with persistent storage references, the list of storage keys), followed by
  each storage as an int64 element count and its raw little-endian bytes;
- the zip format (torch >= 1.6): `archive/data.pkl` plus one `archive/data/<key>` file per storage.

Only plain tensors (`torch._utils._rebuild_tensor_v2`) in (ordered) dicts are supported, which is what
a `state_dict` holds. Anything else in the pickle is refused instead of executed.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _StorageRef:
    def __init__(self, type_name: str, key: str, numel: int):
        if type_name not in _STORAGE_DTYPES:
            raise ValueError(f"unsupported storage type {type_name}")
        self.dtype = np.dtype(_STORAGE_DTYPES[type_name])
        self.key = key
        self.numel = numel
        self.data: np.ndarray | None = None


class _TensorRef:
    def __init__(self, storage: _StorageRef, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise ValueError(f"storage {self.storage.key} was never read")
        item = data.dtype.itemsize
        if len(self.size) == 0:
            return np.array(data[self.offset])
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_rest):
    return _TensorRef(storage, storage_offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, storages: dict[str, _StorageRef]):
        super().__init__(f)
        self._storages = storages

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        # legacy: ('storage', type, key, location, numel, view_metadata); zip: (..., numel)
        type_name, key, numel = pid[1], str(pid[2]), int(pid[4])
        if key not in self._storages:
            self._storages[key] = _StorageRef(type_name, key, numel)
        return self._storages[key]


def _materialise(obj):
    if isinstance(obj, _TensorRef):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
    return obj


def load_state_dict(path: str) -> "collections.OrderedDict[str, np.ndarray]":
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            pkl = next(n for n in names if n.endswith("/data.pkl"))
            prefix = pkl[: -len("data.pkl")]
            storages: dict[str, _StorageRef] = {}
            obj = _Unpickler(io.BytesIO(z.read(pkl)), storages).load()
            for key, st in storages.items():
                st.data = np.frombuffer(z.read(f"{prefix}data/{key}"), dtype=st.dtype.newbyteorder("<"))
        return _materialise(obj)

    with open(path, "rb") as f:
        magic = pickle.load(f)
        if magic != _LEGACY_MAGIC:
            raise ValueError("not a torch legacy checkpoint (bad magic number)")
        pickle.load(f)  # protocol version
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", True):
            raise ValueError("big-endian checkpoints are not supported")
        storages = {}
        obj = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        for key in keys:
            st = storages[str(key)]
            (numel,) = struct.unpack("<q", f.read(8))
            raw = f.read(numel * st.dtype.itemsize)
            if len(raw) != numel * st.dtype.itemsize:
                raise ValueError(f"truncated storage {key}")
            st.data = np.frombuffer(raw, dtype=st.dtype.newbyteorder("<"))
    return _materialise(obj)
