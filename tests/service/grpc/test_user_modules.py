"""Issue 20's modules through the real server: a projected LSTM, a relu RNN without bias, a 3-layer LSTM with
dropout, a time-major GRU, a token GRU and a two-input GRU, each exported by `export_module`, streamed in random
chunks over the native `Stream` and as a Triton sequence (and over REST and the WebSocket), equal torch's own
whole-sequence run (1e-5); token ids outside the vocabulary are refused with the state kept; `seqserve-client
generate` writes text from zen_gru; the load generator sends every input.

One server (port 0, CPU) serves all of them for the whole module."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from seqserve_client import Client, ServerError, codec
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from service.loadtest import LoadConfig, run_load
from service.settings import Settings
from tests.service.grpc.helpers import RunningServer, run_in_thread
from tests.service.helpers import SHIPPED
from tests.training.modules import EXPORTS, build, reference, served_inputs
from training.export_module import export_module

TOLERANCE = 1e-5
STEPS = 23
PARITY: dict[str, dict[str, float]] = {}  # module -> front -> max abs diff, printed at the end


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, dict[str, tuple]]]:
    root = tmp_path_factory.mktemp("modules")
    made = {}
    for name in EXPORTS:
        module, kwargs = build(name)
        export_module(module, root=root, name=name, **kwargs)
        made[name] = (module, kwargs["state"])
    shutil.copytree(SHIPPED / "zen_gru", root / "zen_gru")
    server = run_in_thread(Settings(models=root, host="127.0.0.1", port=0, metrics_port=0, http_port=0, device="cpu",
                                    intra_op_threads=1, max_batch_size=4))
    yield server, made
    server.stop()
    print("\nmodule | max abs diff native | max abs diff Triton")
    for name, row in sorted(PARITY.items()):
        print(f"{name} | {row.get('native', float('nan')):.1e} | {row.get('triton', float('nan')):.1e}")


def _chunks(rng: np.random.Generator) -> list[tuple[int, int]]:
    cuts, start = [], 0
    while start < STEPS:
        end = min(STEPS, start + int(rng.integers(1, 7)))
        cuts.append((start, end))
        start = end
    return cuts


def _part(x: dict[str, np.ndarray], a: int, b: int) -> np.ndarray | dict[str, np.ndarray]:
    part = {k: v[a:b] for k, v in x.items()}
    return part if len(part) > 1 else next(iter(part.values()))


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_each_module_streams_equal_to_torch_on_both_protocols(served: tuple[RunningServer, dict], name: str) -> None:
    server, made = served
    module, state = made[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    x = served_inputs(name, STEPS, rng)
    want = reference(name, module, state, x)
    cuts = _chunks(rng)
    with Client(server.target) as client:
        output = client.model(name).outputs[0].tensor.name
        with client.stream(name) as stream:
            native = np.concatenate([stream.send(_part(x, a, b))[output] for a, b in cuts])
        batch = {k: v[None] for k, v in x.items()}
        whole, _ = client.infer(name, batch if len(batch) > 1 else next(iter(batch.values())))
    got = {"native": native, "triton": _triton(server.target, name, x, cuts, output)}
    PARITY[name] = {front: float(np.max(np.abs(y - want))) for front, y in got.items()}
    assert max(PARITY[name].values()) <= TOLERANCE, PARITY[name]
    np.testing.assert_allclose(whole[output][0], want, atol=TOLERANCE)


def _triton(target: str, name: str, x: dict[str, np.ndarray], cuts: list[tuple[int, int]], output: str) -> np.ndarray:
    client = triton.InferenceServerClient(target)
    pieces = []
    for k, (a, b) in enumerate(cuts):
        tensors = []
        for key, value in x.items():
            part = value[None, a:b]  # (1, time, features)
            tensor = triton.InferInput(key, list(part.shape), np_to_triton_dtype(part.dtype))
            tensor.set_data_from_numpy(part)
            tensors.append(tensor)
        result = client.infer(name, tensors, sequence_id=700 + sorted(EXPORTS).index(name), sequence_start=k == 0,
                              sequence_end=k == len(cuts) - 1)
        pieces.append(result.as_numpy(output)[0])
    client.close()
    return np.concatenate(pieces)


def test_token_ids_outside_the_vocabulary_are_refused_in_stream_and_the_state_kept(
        served: tuple[RunningServer, dict]) -> None:
    server, made = served
    module, state = made["token_gru"]
    x = served_inputs("token_gru", 8, np.random.default_rng(5))
    want = reference("token_gru", module, state, x)
    with Client(server.target) as client, client.stream("token_gru") as stream:
        first = stream.send(x["ids"][:3])["output"]
        with pytest.raises(ServerError) as info:
            stream.send(np.array([[11]], dtype=np.int64))  # VOCAB = 11
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "ids must be in [0, 11)" in str(info.value)
        with pytest.raises(ServerError, match="dtype float32 not accepted"):
            stream.send(np.zeros((1, 1), np.float32))
        rest = stream.send(x["ids"][3:])["output"]
    np.testing.assert_allclose(np.concatenate([first, rest]), want, atol=TOLERANCE)
    tensor = triton.InferInput("ids", [1, 1, 1], "INT64")
    tensor.set_data_from_numpy(np.array([[[-3]]], dtype=np.int64))
    with pytest.raises(triton.InferenceServerException, match=r"token id -3; ids must be in \[0, 11\)"):
        triton.InferenceServerClient(server.target).infer("token_gru", [tensor])
    tensor = triton.InferInput("ids", [1, 1, 1], "FP32")
    tensor.set_data_from_numpy(np.array([[[3.0]]], dtype=np.float32))
    with pytest.raises(triton.InferenceServerException, match=r"datatype 'FP32' not accepted; use \['INT64'\]"):
        triton.InferenceServerClient(server.target).infer("token_gru", [tensor])


def test_a_two_input_model_is_described_and_wants_every_input(served: tuple[RunningServer, dict]) -> None:
    server, _ = served
    with Client(server.target) as client:
        info = client.model("two_inputs")
        extra = [(i.name, list(i.shape)) for i in info.extra_inputs]
        assert (info.input.name, extra) == ("x", [("cond", [-1, -1, 2])])
        assert client.model("token_gru").input.vocab_size == 11
        wrong = pytest.raises(ServerError, match=r"takes the inputs \['x', 'cond'\]")
        with client.stream("two_inputs") as stream, wrong:
            stream.send({"x": np.zeros((1, 3), np.float32)})
    meta = triton.InferenceServerClient(server.target).get_model_metadata("two_inputs")
    assert [(t.name, t.datatype) for t in meta.inputs] == [("x", "FP32"), ("cond", "FP32")]


def test_the_generate_command_writes_text_from_zen_gru(served: tuple[RunningServer, dict]) -> None:
    server, _ = served
    run = subprocess.run([sys.executable, "-m", "seqserve_client", "--target", server.target, "generate",
                          "--prompt", "Beautiful is ", "--length", "40", "--temperature", "0"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    text = run.stdout.rstrip("\n")
    assert text.startswith("Beautiful is better than") and len(text) == len("Beautiful is ") + 40


@pytest.mark.parametrize("protocol", ["native", "triton"])
@pytest.mark.parametrize("model", ["two_inputs", "zen_gru"])
def test_the_load_generator_sends_every_input_the_model_takes(served: tuple[RunningServer, dict], protocol: str,
                                                              model: str) -> None:
    server, _ = served
    report = run_load(LoadConfig(target=server.target, model=model, streams=2, chunk=3, chunks=4, protocol=protocol,
                                 progress=False))
    assert report.errors == {} and report.chunks == 8


def test_the_cli_streams_and_infers_a_two_input_model_from_npy_files(served: tuple[RunningServer, dict],
                                                                   tmp_path: Path) -> None:
    server, made = served
    module, state = made["two_inputs"]
    x = served_inputs("two_inputs", 10, np.random.default_rng(9))
    want = reference("two_inputs", module, state, x)
    for key, value in x.items():
        np.save(tmp_path / f"{key}.npy", value)
    files = [f"--input={key}={tmp_path / key}.npy" for key in x]
    for command in (["stream", "two_inputs", *files, "--chunk", "4"], ["infer", "two_inputs", *files]):
        out = tmp_path / f"{command[0]}.npy"
        run = subprocess.run([sys.executable, "-m", "seqserve_client", "--target", server.target, *command,
                              "--output", str(out)], capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stderr
        np.testing.assert_allclose(np.load(out), want, atol=TOLERANCE)


def test_rest_takes_every_input_by_name_and_token_ids_as_int64(served: tuple[RunningServer, dict]) -> None:
    server, made = served
    client = triton_http.InferenceServerClient(f"127.0.0.1:{server.serving.http_port}")
    for name in ("two_inputs", "token_gru"):
        module, state = made[name]
        x = served_inputs(name, 7, np.random.default_rng(3))
        tensors = []
        for key, value in x.items():
            tensor = triton_http.InferInput(key, [1, *value.shape], np_to_triton_dtype(value.dtype))
            tensor.set_data_from_numpy(value[None], binary_data=False)
            tensors.append(tensor)
        got = client.infer(name, tensors).as_numpy("output")[0]
        np.testing.assert_allclose(got, reference(name, module, state, x), atol=TOLERANCE)
    bad = triton_http.InferInput("ids", [1, 1, 1], "INT64")
    bad.set_data_from_numpy(np.array([[[99]]], dtype=np.int64))
    with pytest.raises(InferenceServerException, match=r"token id 99; ids must be in \[0, 11\)"):
        client.infer("token_gru", [bad])


def test_the_websocket_stream_takes_every_input_in_chunk_inputs(served: tuple[RunningServer, dict]) -> None:
    server, made = served
    module, state = made["two_inputs"]
    x = served_inputs("two_inputs", 9, np.random.default_rng(8))
    want = reference("two_inputs", module, state, x)
    url = f"ws://127.0.0.1:{server.serving.http_port}/v2/models/two_inputs/stream"

    async def session() -> list[pb.StreamResponse]:
        async with aiohttp.ClientSession() as http, http.ws_connect(url, protocols=("seqserve.v1",)) as ws:
            await ws.send_bytes(pb.StreamRequest(seq=0, open=pb.Open(model="two_inputs")).SerializeToString())
            answers = [pb.StreamResponse.FromString((await ws.receive()).data)]
            for seq, (a, b) in enumerate(((0, 4), (4, 9)), 1):
                request = pb.StreamRequest(seq=seq, chunk=pb.Chunk())
                codec.arrays_to_tensors({k: v[a:b] for k, v in x.items()}, request.chunk.inputs)
                await ws.send_bytes(request.SerializeToString())
                answers.append(pb.StreamResponse.FromString((await ws.receive()).data))
            await ws.send_bytes(pb.StreamRequest(seq=9, end=pb.End()).SerializeToString())
            return answers

    opened, *results = asyncio.run(session())
    assert opened.WhichOneof("kind") == "opened", opened
    got = np.concatenate([codec.tensor_to_array(r.result.outputs["output"]) for r in results])
    np.testing.assert_allclose(got, want, atol=TOLERANCE)
