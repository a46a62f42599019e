"""One onnxruntime session: provider choice, thread settings, graph metadata, warm-up and `run`.

The only module of the service that imports onnxruntime.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

import numpy as np

try:
    import onnxruntime as ort
except ModuleNotFoundError as missing:  # the runtime is an extra of its own (pyproject.toml: cpu or cuda)
    raise ModuleNotFoundError("onnxruntime is not installed: pip install -e '.[cpu]' (or '.[cuda]' for an NVIDIA "
                              "GPU); `make run` installs one") from missing

from service.engine.errors import ConfigurationError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
Device = Literal["auto", "cpu", "cuda"]
StateValue: TypeAlias = np.ndarray | ort.OrtValue  # numpy on CPU, a device OrtValue on CUDA
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int32)": "int32", "tensor(int64)": "int64"}


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: numpy dtype name (or the ORT type if unknown) and shape (None = dynamic axis)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]


_ORT_DEFAULT_LOG_SEVERITY = 2  # onnxruntime's own default (warning)
_cuda_probe = threading.Lock()
_cuda_loads: bool | None = None  # process-wide: did onnxruntime's CUDA provider load for `auto` (None: not tried)


def check_providers(device: Device, active: list[str], model: str) -> str:
    """The provider really in use for `device`, given `session.get_providers()`; raises when `cuda` is not active."""
    if device != "cpu" and CUDA in active:
        return CUDA
    if device == "cuda":
        raise ConfigurationError(
            f"--device cuda: the CUDA execution provider is not active for {model} (active: {', '.join(active)}); "
            "check the GPU, the CUDA/cuDNN libraries and onnxruntime-gpu (`make run DEVICE=cuda` installs it), "
            "or use --device auto|cpu"
        )
    return CPU


def create_session(path: Path, options: ort.SessionOptions, device: Device) -> ort.InferenceSession:
    """A session on the providers `device` asks for.

    `cuda` lets onnxruntime print why its CUDA provider did not load (the start then fails). `auto` tries CUDA once
    per process with onnxruntime's own logging silenced, since a missing GPU is expected there, warns once, and then
    creates every later session on CPU only. With the CPU build of onnxruntime (no CUDA provider at all) nothing is
    tried and nothing warned; `cuda` then fails in `check_providers`.
    """
    global _cuda_loads
    if device == "cpu" or CUDA not in ort.get_available_providers() or (device == "auto" and _cuda_loads is False):
        return ort.InferenceSession(str(path), options, providers=[CPU])
    if device == "cuda" or _cuda_loads:
        return ort.InferenceSession(str(path), options, providers=[CUDA, CPU])
    with _cuda_probe:
        if _cuda_loads is not None:
            return create_session(path, options, device)
        ort.set_default_logger_severity(4)
        try:
            session = ort.InferenceSession(str(path), options, providers=[CUDA, CPU])
        finally:
            ort.set_default_logger_severity(_ORT_DEFAULT_LOG_SEVERITY)
        _cuda_loads = CUDA in session.get_providers()
        if not _cuda_loads:
            log.warning("onnxruntime's CUDA execution provider did not load (start with --device cuda to see why); "
                        "serving every model on CPU")
        return session


class Runtime:
    """Wraps one `InferenceSession`; `run` may be called from a worker thread (onnxruntime allows it).

    `state_pairs` maps each state input name to the output that carries its next value. `io_binding` (default:
    on CUDA only) runs through IOBinding and leaves the new state where the provider computed it, as `OrtValue`s.
    `spinning`: onnxruntime's `session.intra_op.allow_spinning` (its pool threads busy-wait after a run).
    """

    def __init__(
        self,
        path: Path,
        device: Device,
        intra_op_threads: int,
        label: str,
        state_pairs: dict[str, str],
        io_binding: bool | None = None,
        spinning: bool = False,
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        # Pool threads that spin after a run steal the event loop's core on a small box: off unless measured better
        # (service/engine/tuning.py). A single thread has no pool.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self._session = create_session(path, options, device)
        self.provider = check_providers(device, self._session.get_providers(), label)
        self.inputs = [_info(a) for a in self._session.get_inputs()]
        self.outputs = [_info(a) for a in self._session.get_outputs()]
        self._state_pairs = dict(state_pairs)
        self._output_names = [o.name for o in self.outputs]
        self._state_outputs = set(self._state_pairs.values())
        self.io_binding = self.provider == CUDA if io_binding is None else io_binding
        self._state_device = "cuda" if self.provider == CUDA else "cpu"

    def run(
        self, inputs: dict[str, np.ndarray], state: dict[str, StateValue]
    ) -> tuple[dict[str, np.ndarray], dict[str, StateValue]]:
        """One model run: `(outputs without the state outputs, new state keyed by state input name)`.

        On CUDA the state stays on the device: state values may be `OrtValue`s returned by an earlier run,
        and the new state comes back as device `OrtValue`s (`to_host` copies one to numpy).
        """
        if not self.io_binding:
            results = self._session.run(self._output_names, {**inputs, **state})
            values = dict(zip(self._output_names, results, strict=True))
        else:
            values = self._run_bound({**inputs, **state})
        outputs = {name: v for name, v in values.items() if name not in self._state_outputs}
        return outputs, {inp: values[out] for inp, out in self._state_pairs.items()}

    def _run_bound(self, feeds: dict[str, object]) -> dict[str, object]:
        places = {name: self._state_device if name in self._state_outputs else "cpu" for name in self._output_names}
        values = _run_bound(self._session, feeds, places)
        return {name: value if name in self._state_outputs else value.numpy() for name, value in values.items()}


class DeviceGraph:
    """A small helper graph (the state pool's gather and scatter) on a model's provider; outputs stay there.

    Inputs may be `OrtValue`s on that device or numpy arrays (copied in); outputs are `OrtValue`s on the device.
    """

    def __init__(self, model: bytes, provider: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(model, options, providers=[CUDA, CPU] if provider == CUDA else [CPU])
        self.device = "cuda" if provider == CUDA else "cpu"
        self._places = {o.name: self.device for o in self._session.get_outputs()}

    def run(self, feeds: dict[str, StateValue]) -> dict[str, ort.OrtValue]:
        return _run_bound(self._session, dict(feeds), self._places)

    def upload(self, array: np.ndarray) -> ort.OrtValue:
        """An `OrtValue` copy of `array` on this graph's device."""
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device, 0)


def _run_bound(
    session: ort.InferenceSession, feeds: dict[str, object], places: dict[str, str]
) -> dict[str, ort.OrtValue]:
    """One run through IOBinding: `OrtValue` inputs bound as they are, numpy copied in; output `name` on `places`."""
    binding = session.io_binding()
    for name, value in feeds.items():
        if isinstance(value, ort.OrtValue):
            binding.bind_ortvalue_input(name, value)
        else:
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
    for name, place in places.items():
        binding.bind_output(name, place)
    session.run_with_iobinding(binding)
    return dict(zip(places, binding.get_outputs(), strict=True))

def to_host(value: StateValue) -> np.ndarray:
    """A numpy copy of an array or a device `OrtValue`."""
    if isinstance(value, ort.OrtValue):
        return np.asarray(value.numpy())
    return np.asarray(value)


def _info(arg: ort.NodeArg) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return TensorInfo(arg.name, _ORT_DTYPES.get(arg.type, arg.type), shape)
