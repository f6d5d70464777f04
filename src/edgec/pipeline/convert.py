"""The TFLite converter, once: ``convert(model, mode=...)`` for every model edgec writes.

Modes: ``int8`` (full-integer, calibrated; what MCUs and NPUs run), ``int16`` (TFLite's
16x8 mode: int16 activations, int8 weights, int64 biases; calibrated like int8),
``float16`` and ``dynamic-range`` (the phone variants), ``float`` (a plain float32 model for
inspection). All are converted from a batch-1 concrete function (``trace_batch1``, which
also records the name scope of every layer call: ``convert_named`` returns them with the
model, so reports name ops by the user's layers). The converter options of
each mode are set in one place (``configure``); the full-integer conversions run in a child
process (``_convert_worker``, which calls ``configure`` too), where a native crash of the
calibrator becomes a ``ConversionError``. The other modes run no calibration and convert
in process.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgec._native_log import captured_native_stderr
from edgec._process import (
    outliving_env,
    process_environment,
    process_tempdir,
    stop_on_interrupt,
)
from edgec.artifact.layer_names import LayerNames
from edgec.artifact.op_forms import tflm_forms
from edgec.datasets.loading import IndexInput, non_finite
from edgec.errors import ConversionError, InputError, UsageError

IO_TYPES = ("int8", "uint8", "int16", "float32")
# Activation width of the full-integer model (weights are int8 in both): each is a mode.
ACTIVATIONS = ("int8", "int16")  # the full-integer conversions
# --activations: auto is an int8 model with int16 layers where they pay, measured (a 16x8
# conversion of the same calibration supplies them; pipeline.precision)
ACTIVATION_CHOICES = (*ACTIVATIONS, "auto")
# int4: packed filters (artifact.int4); auto: int4 or int8 per layer (pipeline.precision)
WEIGHTS = ("int8", "int4", "auto")
PHONE_VARIANTS = ("float16", "dynamic-range")
# --per-channel: weights per channel everywhere (always), per tensor everywhere (never), or
# chosen per layer by measurement (auto; edgec.pipeline.precision)
PER_CHANNEL_MODES = ("auto", "always", "never")
MODES = (*ACTIVATIONS, *PHONE_VARIANTS, "float")


def model_io_type(io_type: str, activations: str = "int8") -> str:
    """The dtype of the model's inputs and outputs for ``--io-type`` with ``--activations``.

    In 16x8 mode the converter takes only int16 or float32 I/O ("inference_input_type and
    inference_output_type must be in ['tf.float32', 'tf.int16']", TF 2.21): integer I/O
    is int16 there, so the default ``int8`` (integer I/O) becomes ``int16``; ``uint8`` is
    refused. ``int16`` I/O needs int16 activations.
    """
    if io_type not in IO_TYPES:
        raise UsageError(f"unknown --io-type '{io_type}' (use {', '.join(IO_TYPES)})")
    if activations not in ACTIVATION_CHOICES:
        raise UsageError(
            f"unknown --activations '{activations}' (use {', '.join(ACTIVATION_CHOICES)})"
        )
    if activations in ("int8", "auto"):  # auto: an int8 model, some layers int16 inside
        if io_type == "int16":
            raise UsageError(
                "--io-type int16 needs --activations int16",
                hint="an int8 model has int8 (or uint8/float32) inputs and outputs",
            )
        return io_type
    if io_type == "uint8":
        raise UsageError(
            "--io-type uint8 cannot be combined with --activations int16: the 16x8 "
            "converter gives int16 or float32 inputs and outputs",
            hint="use `--io-type int16` (the default integer I/O there) or float32",
        )
    return "int16" if io_type == "int8" else io_type


@dataclass(frozen=True)
class Conversion:
    """A converted model and the Keras layer behind each of its ops (recorded in tracing)."""

    tflite: bytes
    names: LayerNames


def convert(
    model,
    *,
    mode: str = "int8",
    calibration_x: np.ndarray | None = None,
    io_type: str = "int8",
    quiet: bool = True,
) -> bytes:
    """Convert a Keras model (tf_keras, Keras 3 or a SavedModel signature) to TFLite.

    ``mode`` is one of ``MODES``; ``int8`` and ``int16`` need ``calibration_x`` (float
    samples) and take ``io_type`` for their inputs and outputs (``model_io_type``). The
    others keep float32 I/O.
    """
    return convert_named(
        model, mode=mode, calibration_x=calibration_x, io_type=io_type, quiet=quiet
    ).tflite


def convert_named(
    model,
    *,
    mode: str = "int8",
    calibration_x: np.ndarray | None = None,
    io_type: str = "int8",
    quiet: bool = True,
) -> Conversion:
    """``convert``, with the layer names of the traced model (``LayerNames``)."""
    if mode not in MODES:
        raise InputError(f"unknown conversion mode '{mode}' (use {', '.join(MODES)})")
    if mode in ACTIVATIONS:
        if calibration_x is None:
            raise InputError(f"{mode} conversion needs calibration samples")
        converted = convert_full_integer(
            model, calibration_x, io_type=io_type, activations=mode, quiet=quiet
        )
        assert converted.names is not None  # every conversion here traced the model
        return Conversion(converted.model, converted.names)
    from edgec._tf import tf

    traced = trace_batch1(model)
    trackable = (
        model if type(model).__module__.startswith("tf_keras") else variables_of(traced.function)
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions([traced.function], trackable)
    configure(converter, mode)
    return Conversion(_convert(converter, traced.function.graph, quiet), traced.names)


def configure(converter, mode: str, *, io_type: str = "int8") -> None:
    """Set the options of ``mode`` on a ``tf.lite.TFLiteConverter``."""
    from edgec._tf import tf

    if mode == "float":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode in ACTIVATIONS:
        ops = tf.lite.OpsSet
        converter.target_spec.supported_ops = [
            ops.TFLITE_BUILTINS_INT8
            if mode == "int8"
            else ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        dtype = getattr(tf, model_io_type(io_type, mode))
        converter.inference_input_type = dtype
        converter.inference_output_type = dtype
    elif mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    # dynamic-range (no representative dataset): the converter quantizes weights to int8
    # but leaves constant tensors under 1024 elements in float32 (seen here: the digits
    # CNN's first conv kernel, 144 values, and its 640-value logits kernel stay float32).


@dataclass(frozen=True)
class Converted:
    """A full-integer conversion: the converter's default model, per-channel weights, and
    (when asked) the same calibration quantized with per-tensor weights in every layer."""

    model: bytes
    per_tensor: bytes | None = None
    per_tensor_error: str = ""  # asked for, but the per-tensor quantization failed: why
    names: LayerNames | None = None  # the Keras layer behind each op (recorded in tracing)
    int16: bytes | None = None  # --activations auto: the same calibration in 16x8 mode
    int16_error: str = ""  # asked for, but the 16x8 conversion failed: why
    # the ops rewritten into forms TFLM runs in int8 (artifact.op_forms), described
    op_rewrites: tuple[str, ...] = ()


def convert_int8(
    model,
    calibration_x: np.ndarray,
    *,
    io_type: str = "int8",
    activations: str = "int8",
    quiet: bool = True,
) -> bytes:
    """``convert_full_integer``'s model (per-channel weights), as bytes."""
    return convert_full_integer(
        model, calibration_x, io_type=io_type, activations=activations, quiet=quiet
    ).model


def convert_full_integer(
    model,
    calibration_x: np.ndarray,
    *,
    io_type: str = "int8",
    activations: str = "int8",
    quiet: bool = True,
    per_tensor: bool = False,
    for_tflm: bool = True,
) -> Converted:
    """``convert``'s full-integer modes (``activations`` int8 or int16, weights int8): the
    model, converted in the child process; with ``per_tensor`` also its per-tensor twin
    (``Converted.per_tensor``, see ``_convert_worker``).

    TFLITE_BUILTINS_INT8 only (no silent float fallback), per-channel weights, and a
    static batch size of 1: converting from a concrete function with a fixed input
    signature leaves no dynamic dimension in the flatbuffer (``from_keras_model`` would
    keep batch = -1, which Vela warns about and the Edge TPU rejects).

    The model is traced here and saved with its variables; conversion, calibration and
    quantization run in a child process (``_convert_worker``), where a native crash
    becomes a ``ConversionError``. ``for_tflm``: a TFLM target will run it (int8 ops TFLM
    cannot run become tables: ``op_forms.tflm_forms``).
    """
    samples = check_calibration_data(calibration_x)
    check_recurrent(model)
    traced = trace_batch1(model)
    return _convert_full_integer(traced, samples, io_type, activations, quiet, per_tensor, for_tflm)


def _convert_full_integer(
    traced: Traced,
    samples: np.ndarray,
    io_type: str,
    activations: str,
    quiet: bool,
    per_tensor: bool,
    for_tflm: bool = True,
) -> Converted:
    from edgec._tf import tf

    concrete = traced.function
    with tempfile.TemporaryDirectory(prefix="edgec-convert-") as tmp:
        folder = Path(tmp)
        (folder / "tmp").mkdir()
        with captured_native_stderr(enabled=quiet):
            tf.saved_model.save(variables_of(concrete), str(folder / "model"), signatures=concrete)
        job = {"mode": activations, "io_type": io_type, "per_tensor": per_tensor}
        (folder / "job.json").write_text(json.dumps(job))
        np.save(folder / "calibration.npy", samples)
        crashed = _WORKER.run(folder)
        log = (
            (folder / "log.txt").read_text("utf-8", "replace")
            if (folder / "log.txt").exists()
            else ""
        )
        if not quiet and log:
            print(log, file=sys.stderr)
        if crashed is not None:
            raise _crash_error(crashed, folder / "progress", len(samples), log)
        if (folder / "error.txt").exists():
            text = (folder / "error.txt").read_text("utf-8", "replace")
            raise _conversion_error(text + "\n" + log, concrete.graph, activations)
        twin, failed = folder / "model_per_tensor.tflite", folder / "per_tensor_error.txt"
        # the converter's forms TFLM cannot run, rewritten where proven (a mask's float
        # cast, float islands and splits, SELECT, TILE, tables: artifact/op_forms.py)
        forms = functools.partial(tflm_forms, samples=samples, tables=for_tflm)
        main, rewrites = forms((folder / "model.tflite").read_bytes())
        twin_model = forms(twin.read_bytes())[0] if twin.exists() else None
        return Converted(
            main,
            twin_model,
            failed.read_text("utf-8", "replace")[:300] if failed.exists() else "",
            traced.names,
            op_rewrites=rewrites,
        )


# The calibrator computes min/max and (max - min) / 255 in float32: beyond this the
# ranges overflow (calibration data around 3e38 crashed mlir_quantize here, facts.md 10).
MAX_CALIBRATION_MAGNITUDE = 1e30


def check_calibration_data(x: np.ndarray) -> np.ndarray:
    """The calibration samples as float32, refused when the quantizer cannot represent them;
    integer samples (an ``index_input``'s, checked by the loader) as they are."""
    if x.dtype.kind in "iu":
        return x
    samples = np.asarray(x, dtype=np.float64)
    if (found := non_finite(samples)) is not None:
        raise InputError(
            f"calibration data has {found[0]} non-finite values (NaN or infinity), "
            f"the first in sample {found[1]}",
            hint="remove or repair those samples; int8 ranges need finite values",
        )
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak > MAX_CALIBRATION_MAGNITUDE:
        raise InputError(
            f"calibration data reaches {peak:.3g}, beyond what int8 quantization can "
            f"represent (|x| <= {MAX_CALIBRATION_MAGNITUDE:.0e})",
            hint="scale the data as the model expects it (e.g. divide raw values) or fix the file",
        )
    return samples.astype(np.float32)


@dataclass(frozen=True)
class Traced:
    """``model`` traced with a fixed batch-1 input (float32, or an ``index_input``'s dtype),
    and the scope of each layer call."""

    function: Any  # a TensorFlow concrete function
    names: LayerNames


def trace_batch1(model) -> Traced:
    """Trace ``model`` for conversion, recording which layer runs in which name scope.

    Each leaf layer's ``call`` is wrapped for the trace (and restored after it): the
    wrapper notes ``tf.get_current_name_scope()``, the scope TensorFlow made unique for
    this call, which the converter's tensor names carry. ``LayerNames`` maps them back.
    """
    from edgec._tf import tf

    indices = index_input(model)
    dtype = tf.float32 if indices is None else tf.as_dtype(indices.dtype)
    spec = tf.TensorSpec([1, *model.inputs[0].shape[1:]], dtype, name="input")
    layers = flat_layers(model)
    scopes: dict[str, str] = {}
    with _recording_scopes(layers, scopes):
        function = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    shown = {layer.name: _unwrapped(layer).name for layer in layers if not _tfmot_own(layer)}
    kinds = {layer.name: type(_unwrapped(layer)).__name__ for layer in layers}
    names = LayerNames(scopes, shown, kinds)
    outputs = {
        key: names.layer_of_scope(_producer_op(tensor).name)
        for key, tensor in zip(_signature_keys(function), function.outputs, strict=True)
    }
    return Traced(function, LayerNames(scopes, shown, kinds, outputs))


def _signature_keys(function) -> list[str]:
    """The signature key of each of the function's outputs, in ``function.outputs`` order, as
    ``tf.saved_model.save`` and the converter name them: a dict's keys (flattened in
    sorted order), else ``output_<i>``."""
    structured = function.structured_outputs
    if isinstance(structured, dict):
        return sorted(structured)
    return [f"output_{i}" for i in range(len(function.outputs))]


@contextlib.contextmanager
def _recording_scopes(layers: list, scopes: dict[str, str]) -> Iterator[None]:
    from edgec._tf import tf

    def recorder(layer):
        call = layer.call
        # a Keras 3 keras.ops node (``x + 3.0``) opens no name scope of its own: the trace
        # opens one, so its ops are named after it, as the model's summary() names it
        bare = not hasattr(layer, "trainable_weights")

        def recording_call(*args, **kwargs):
            with tf.name_scope(layer.name) if bare else contextlib.nullcontext():
                scopes.setdefault(tf.get_current_name_scope(), layer.name)
                return call(*args, **kwargs)

        return recording_call

    # (layer, its own instance ``call`` or None): tf_keras' SavedModel export (which the
    # converter runs on a tf_keras model) leaves ``call`` set on the instance
    patched: list[tuple[Any, Any]] = []
    try:
        for layer in layers:
            patched.append((layer, vars(layer).get("call")))
            layer.call = recorder(layer)
        yield
    finally:
        for layer, own in patched:
            if own is None:
                del layer.call
            else:
                layer.call = own


def _producer_op(tensor):
    """The op computing a traced function's output (through the Identity ops tracing adds)."""
    op = tensor.op
    while op.type == "Identity" and op.inputs:
        op = op.inputs[0].op
    return op


def _tfmot_own(layer) -> bool:
    """A layer TF-MOT adds itself (QAT's input QuantizeLayer), not one of the user's."""
    module = type(layer).__module__
    return module.startswith("tensorflow_model_optimization") and not hasattr(layer, "layer")


def _unwrapped(layer):
    """The user's layer inside a TF-MOT wrapper (QAT, pruning, clustering), else the layer.

    Only TF-MOT's: Keras' own wrappers (TimeDistributed, Bidirectional) are the user's
    layers, and ``model.summary()`` names them.
    """
    while type(layer).__module__.startswith("tensorflow_model_optimization") and hasattr(
        layer, "layer"
    ):
        layer = layer.layer
    return layer


def variables_of(concrete):
    """A trackable holding the variables ``concrete`` captures.

    Keras 3 models (and SavedModel signatures) do not expose their variables to the
    converter or to tf.saved_model as a trackable: given the model, the converter keeps
    READ_VARIABLE ops that fail to invoke ("variable != nullptr"); without any trackable
    it takes a deprecated path (and warns). Tracking the captured variables works for all.
    """
    from edgec._tf import tf

    holder = tf.Module()
    holder.captured = list(concrete.variables)
    return holder


def flat_layers(model) -> list:
    """The model's layers, a nested model's in its place; a Keras 3 model's keras.ops nodes
    too (its ``operations``: what its summary() lists)."""
    out = []
    for layer in getattr(model, "operations", None) or getattr(model, "layers", []):
        out.extend(flat_layers(layer) if hasattr(layer, "layers") else [layer])
    return out


def index_input(model) -> IndexInput | None:
    """The model's input when it holds indices: an integer input read by an Embedding layer,
    or the integer input of a SavedModel signature (whose function takes no other dtype).

    It is traced and converted as integers, unquantized: the converter keeps an integer
    input as it is (int8 I/O applies to float inputs) and TFLM's GATHER reads int32
    positions. Traced as float32 like other inputs, it was quantized and then truncated
    back (DEQUANTIZE, CAST): with 50 token ids in int8 steps of 0.19, id 7 came back as 6.
    A Keras model's index input is int32 (``input_as``: the build rebuilds an int64 or
    uint8 one, whose GATHER TFLM refuses, "Positions of type 'INT64' are not supported",
    or whose CAST to int32 it cannot run); a signature's keeps its dtype. An integer input
    that the Keras model casts to float at once (pixels into Rescaling) is no index input
    (``input_as`` makes it float32).
    """
    dtype = _input_dtype(model)
    if dtype is None or not dtype.startswith(("int", "uint")):
        return None
    if not getattr(model, "layers", None):  # a SavedModel signature
        return IndexInput(dtype)
    inputs = model.inputs
    readers = [
        layer
        for layer in flat_layers(model)
        if type(layer).__name__ == "Embedding" and _reads(layer, inputs[0])
    ]
    if not readers:
        return None
    rows = min(readers, key=lambda layer: int(layer.input_dim))
    return IndexInput("int32", int(rows.input_dim), rows.name)


def input_as(model) -> tuple[str, str] | None:
    """(the Keras model's input dtype, the dtype the build gives it) where they differ: an
    integer input the model casts to float (raw pixels or counts into ``Rescaling``)
    becomes float32, an index input (``index_input``) of another integer type int32.

    Traced as it is, a cast input left the model's cast in the int8 model (tf_keras and
    Keras 3 both cast a model's input to its Input's dtype): a DEQUANTIZE and a CAST to
    uint8 that TFLM cannot run ("Output type UINT8 (3) not supported"). The build rebuilds
    the model with the new input (``graph_rewrite.rebuild``), proven equal on the data;
    whole numbers in the dtype's range are then quantized exactly, or read as positions.
    """
    dtype = _input_dtype(model)
    if dtype is None or not getattr(model, "layers", None):
        return None
    if (indices := index_input(model)) is not None:
        return (dtype, indices.dtype) if dtype != indices.dtype else None
    return (dtype, "float32") if dtype.startswith(("int", "uint")) else None


def retyped(model, x: np.ndarray, dtype: str):
    """(the model rebuilt with a ``dtype`` input, as ``input_as`` says, its proof on ``x``)."""
    from edgec.pipeline.graph_rewrite import proven_equal, rebuild

    rebuilt = rebuild(model, lambda gn: None, input_dtype=dtype)
    return rebuilt, proven_equal(model, rebuilt, x)


def synthetic_samples(model, count: int = 8, seed: int = 0) -> np.ndarray:
    """Inputs for proving a rewrite where no data is given (``edgec inspect``): normal
    floats, ids within an Embedding's rows, or whole numbers 0..255 for an integer input
    the model casts (pixels)."""
    rng = np.random.default_rng(seed)
    shape = (count, *(int(d) for d in model.inputs[0].shape[1:]))
    indices, dtype = index_input(model), _input_dtype(model) or "float32"
    if indices is not None:
        high = indices.rows if indices.rows is not None else 128
        return rng.integers(0, high, shape).astype(indices.dtype)
    if dtype.startswith(("int", "uint")):
        return rng.integers(0, 256, shape).astype(np.float32)
    return rng.normal(size=shape).astype(np.float32)


def _input_dtype(model) -> str | None:
    inputs = getattr(model, "inputs", None) or []
    return str(getattr(inputs[0].dtype, "name", inputs[0].dtype)) if len(inputs) == 1 else None


def _reads(layer, tensor) -> bool:
    """``layer`` is called on ``tensor``: by name, as a cloned model (TF-MOT's strip_pruning)
    gives its layers other tensor objects of the same names."""
    try:
        read = layer.input
    except (AttributeError, ValueError):  # a layer called more than once
        return False
    return read is tensor or getattr(read, "name", None) == tensor.name


# Keras 3 layers whose direct conversion TFLM cannot run, while their tf_keras form converts
# to its kernels: a model with any of them converts through its proven tf_keras rebuild
_THROUGH_TF_KERAS = frozenset((
    # fused LSTM only from tf_keras: Keras 3 LSTMs crash the calibrator (they lack the
    # ``tf._implements`` annotation that fuses them)
    "LSTM",
    "GRU",
    # Keras 3 wraps negative indices (``ops.take``: LESS, ADD and a SELECT, which TFLM has
    # no kernel for); tf_keras' Embedding is one GATHER
    "Embedding",
    # Keras 3 repeats rows and columns (``ops.repeat``: TILE, which TFLM has no kernel for);
    # tf_keras' is one RESIZE_NEAREST_NEIGHBOR
    "UpSampling2D",
    # Keras 3 negates the mean in float (DEQUANTIZE, NEG, QUANTIZE: a float tensor in the
    # int8 model); tf_keras' converts to int8 MEAN, SQUARED_DIFFERENCE, RSQRT, MUL, SUB
    "LayerNormalization",
    # Keras 3 squares in float (DEQUANTIZE, SQUARE, QUANTIZE), then SUM, RSQRT, MINIMUM
    # and MUL; tf_keras' is one int8 L2_NORMALIZATION
    "UnitNormalization",
))  # fmt: skip


def needs_tf_keras(model) -> bool:
    """A Keras 3 model converts through its tf_keras rebuild: it has a layer of
    ``_THROUGH_TF_KERAS``, or an input the build gives another dtype (``input_as``: by
    ``graph_rewrite``, which rebuilds tf_keras models)."""
    from edgec.pipeline.recurrent import recurrent_type

    return input_as(model) is not None or any(
        recurrent_type(layer) in _THROUGH_TF_KERAS for layer in flat_layers(model)
    )


def check_recurrent(model) -> None:
    """A GRU (not unrolled) crashes TensorFlow's calibrator: say so before converting (also
    one a Bidirectional wraps)."""
    from edgec.pipeline.recurrent import recurrent_type

    for layer in flat_layers(model):
        inner = getattr(layer, "forward_layer", layer)  # a Bidirectional's
        if recurrent_type(layer) == "GRU" and not getattr(inner, "unroll", False):
            raise ConversionError(
                f"layer '{layer.name}' is a GRU: TensorFlow's int8 calibrator crashes on its "
                "loop, and TFLM has no GRU kernel",
                hint="rebuild it with GRU(..., unroll=True) (converts to int8 builtin ops), "
                "or use an LSTM",
            )


def is_keras3(model) -> bool:
    """A Keras 3 (``keras`` package) model, told apart without importing Keras 3."""
    return type(model).__module__.split(".")[0] == "keras"


class _Worker:
    """The conversion child: started on first use and reused by every later conversion of
    this process (a build's, fit's trials', the API's or a notebook's builds, the commands
    ``edgec.cli.main`` runs in one process); a new one after a crash.

    Importing TensorFlow and warming its converter up costs the child about 3 s (one core),
    once per edgec process; a crash costs only the job that caused it. A model process
    forks its child instead (``fork_converter``), once it has imported TensorFlow: the
    child then starts with the parent's TensorFlow and imports nothing. The child keeps its
    own temporary folder (``_process.process_tempdir``), removed when it ends, so it
    outlives the command that started it. It ends with this process: at its stdin's EOF
    (``close``, at exit) or, if this process dies first, by the parent-death signal
    (``_process.end_with_parent``). A child started under another environment (threads,
    ``PYTHONPATH``, ``TF_*``) than the current one is replaced, so a conversion always
    runs under the environment a one-shot child would have had.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | _Forked | None = None
        self._folder: Path | None = None
        self._environment: dict[str, str] = {}
        # From its start (importing TensorFlow, warming up) to its first answer, and while a
        # job runs, the child is busy: a command that ends then stops it (``stop``: it may
        # be writing into the command's folder); an idle child waits for the next job
        self._warming = False
        self._in_job = False
        self._lock = threading.Lock()  # one job at a time (the API may run in threads)
        atexit.register(self.close)

    def start(self, fork: bool = False) -> None:
        """Start the child (if not running) so that its TensorFlow import overlaps other work;
        ``fork``: fork this process where that is safe (``_Forked``) instead."""
        with self._lock:
            self._start(fork)

    def _start(self, fork: bool = False) -> None:
        environment = process_environment()
        if self._proc is not None and (self._in_job or self._environment != environment):
            # a job abandoned mid-way (an interrupt without a command to stop it: its answer
            # would be taken for the next job's), or another environment
            self.stop(busy_only=False)
        if self._proc is not None and self._proc.poll() is not None:
            self._discard()
        if self._proc is None:
            self._folder = Path(tempfile.mkdtemp(prefix="edgec-converter-", dir=process_tempdir()))
            if fork and _Forked.safe():
                try:
                    self._proc = _Forked(outliving_env(self._folder))
                except OSError:  # no fork here (strict overcommit: ENOMEM): spawn it
                    pass
                else:
                    self._environment = environment
                    self._warming = True
                    return
            self._proc = subprocess.Popen(
                # -P: not the current directory first on sys.path (a checkout's numpy.py);
                # it runs inside the build's model process, confined with it
                [sys.executable, "-P", "-m", "edgec.pipeline._convert_worker", str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env=outliving_env(self._folder),
            )
            self._environment = environment
            self._warming = True

    def run(self, folder: Path) -> int | None:
        """Run the job in ``folder``; None when it finished, else the child's exit status."""
        with self._lock:
            self._start()
            proc = self._proc
            assert proc is not None and proc.stdin is not None and proc.stdout is not None
            self._in_job = True
            try:
                proc.stdin.write(f"{folder}\n")
                proc.stdin.flush()
                # "done", after whatever else reached the child's stdout before it took its
                # protocol (a library printing at its start): read on, never wait on a child
                # that is alive and waiting for its next job
                for line in proc.stdout:
                    if line.strip() == "done":
                        self._warming = self._in_job = False
                        return None
            except BrokenPipeError:
                pass
            code = proc.wait()
            self._discard()
            return code

    def close(self) -> None:
        """End the child: at its stdin's EOF when idle (it exits), killed when busy."""
        if self._proc is not None and self._proc.poll() is None:
            if self._busy:
                self._proc.kill()  # a job or the warm-up: nothing to wait for
            else:
                assert self._proc.stdin is not None
                with contextlib.suppress(BrokenPipeError):
                    self._proc.stdin.close()
            self._proc.wait()
        self._discard()

    def stop(self, busy_only: bool = True) -> None:
        """End the child now if it is working (the command was interrupted or failed, and
        its temporary folder is about to go): no waiting for it. An idle child, between
        jobs, is kept for the next conversion."""
        if self._proc is None or (busy_only and not self._busy):
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._discard()

    @property
    def _busy(self) -> bool:
        return self._warming or self._in_job

    def _discard(self) -> None:
        """Forget the ended child and remove its folder."""
        if self._proc is not None:
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self._proc = None
        self._warming = self._in_job = False
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


class _Forked:
    """The conversion child as a fork of this process, with ``subprocess.Popen``'s
    interface as ``_Worker`` uses it (``pid``, ``stdin``, ``stdout``, ``poll``, ``wait``,
    ``kill``): it serves jobs as the spawned child does (``_convert_worker.serve``), with
    the TensorFlow this process imported.

    Only where forking is safe (``safe``): a process with one thread whose TensorFlow
    runtime has not started (no op has run, so none of its thread pools exists). A model
    process is that right after its TensorFlow import (``fork_converter``). The threads
    NumPy's and SciPy's OpenBLAS start at their import wait idle, and OpenBLAS stops them
    around a fork (its ``pthread_atfork`` handler).
    """

    def __init__(self, env: dict[str, str]) -> None:
        jobs_read, jobs_write = os.pipe()  # both ends not inherited by later children
        answers_read, answers_write = os.pipe()
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        # Ctrl-C or SIGTERM held until both sides are set up: a signal just after the fork
        # would run this process's exit path (its atexit handlers) in the child, or leave
        # a child that nothing tracks here
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            # a model process has TensorFlow's ~2 GB of address space: with strict
            # overcommit (vm.overcommit_memory=2) fork fails where a spawn does not
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            for fd in (jobs_read, jobs_write, answers_read, answers_write):
                os.close(fd)
            raise
        if pid == 0:  # pragma: no cover (the child; the tests see what it answers)
            _serve_forked(parent, env, jobs_read, answers_write, held)
        os.close(jobs_read)
        os.close(answers_write)
        self.pid = pid
        self.returncode: int | None = None
        self.stdin = os.fdopen(jobs_write, "w")
        self.stdout = os.fdopen(answers_read, "r")
        signal.pthread_sigmask(signal.SIG_SETMASK, held)

    @staticmethod
    def safe() -> bool:
        """This process can fork the child: one thread, TensorFlow imported and idle."""
        return not _Forked.unsafe()

    @staticmethod
    def unsafe() -> str:
        """Why this process cannot fork the child ("" if it can)."""
        if threading.active_count() != 1:
            return f"{threading.active_count()} threads"
        if "tensorflow" not in sys.modules:
            return "TensorFlow is not imported"
        from edgec._tf import runtime_started

        return "TensorFlow's runtime has started" if runtime_started() else ""

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def _serve_forked(
    parent: int, env: dict[str, str], jobs: int, answers: int, held: set[int | signal.Signals]
) -> None:
    """The forked child: the spawned child's set-up (its environment, the null device on
    fd 0-2, nothing else of the parent's open), then its loop; it never returns into the
    parent's code, and exits without the parent's ``atexit`` handlers. ``held``: the
    signal mask to restore once its own handlers are set."""
    code = 0
    try:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        keep = {0, 1, 2, jobs, answers}
        for name in os.listdir("/proc/self/fd"):  # the parent's pipes, logs and files
            if int(name) not in keep:
                with contextlib.suppress(OSError):
                    os.close(int(name))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        from edgec._process import end_with_parent
        from edgec.pipeline._convert_worker import serve

        end_with_parent(parent)
        os.environ.clear()
        os.environ.update(env)
        tempfile.tempdir = None
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 (the process's own streams)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        serve(os.fdopen(jobs, "r"), os.fdopen(answers, "w"))
    except BaseException:  # noqa: BLE001 (a job's failure is answered; this ends the child)
        code = 1
    finally:
        os._exit(code)


_WORKER = _Worker()
start_converter = _WORKER.start
stop_on_interrupt(_WORKER.stop)


def fork_converter() -> None:
    """In a model process, right after its TensorFlow import: start the conversion child
    as a fork of this process (``_Forked``), or as a new process where forking is not safe
    or fails (a speed-up only: the build goes on either way)."""
    import edgec._tf  # noqa: F401 (the import is what the child inherits)

    if why := _Forked.unsafe():  # a new import that starts a thread, say: --debug shows it
        print(f"edgec: the conversion child is spawned, not forked ({why})", file=sys.stderr)
    _WORKER.start(fork=True)


def _crash_error(code: int, progress: Path, samples: int, log: str = "") -> ConversionError:
    """What the converter was doing when its process died (``log``: what it wrote), or
    the resource limit it reached: the model process's limits bind its conversion child
    too, and a limit is not a crash (``reached_limit``: the model process reports it as
    its own, with how to raise it)."""
    from edgec.sandbox.worker import LIMIT_NAMES, limit_in

    steps = progress.read_text().split() if progress.exists() else []
    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
    limit = limit_in(code, log)
    if limit is not None:
        error = ConversionError(
            f"the TFLite converter's process reached its {LIMIT_NAMES.get(limit, limit)} limit "
            f"({how}); nothing was written",
            hint="if the model really needs more, raise the limit its process inherits "
            "(EDGEC_LIMITS in edgec's sandbox, else ulimit)",
        )
        error.reached_limit = limit
        return error
    if not steps:
        where = "while converting the graph (before calibration)"
        hint = "run with --debug for the converter's log; a plain float model may show the layer"
    elif steps[-1] == "quantize":
        where = "while quantizing the calibrated model (mlir_quantize)"
        hint = "check the calibration data's range and the model's layers (recurrent layers)"
    else:
        where = f"while calibrating on calibration sample {steps[-1]} of {samples}"
        hint = "check that sample for extreme values, and the model's recurrent layers"
    return ConversionError(
        f"the TFLite converter crashed ({how}) {where}; nothing was written", hint=hint
    )


def _convert(converter, graph, quiet: bool) -> bytes:
    with captured_native_stderr(enabled=quiet) as log:
        try:
            return bytes(converter.convert())
        except Exception as exc:  # ConverterError, ValueError, RuntimeError ...
            raise _conversion_error(str(exc) + "\n" + log.text(), graph) from None


def _conversion_error(text: str, graph, mode: str = "int8") -> ConversionError:
    """One line from the converter's MLIR diagnostics: which op, which layer, what to try."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    error = next((ln for ln in lines if "error:" in ln), lines[0] if lines else "unknown error")
    error = re.sub(r"^.*?error:\s*", "", error)[:300]
    op = re.search(r"'tf\.(\w+)'", error)
    layer = ""
    if op:
        # The converter only gives a Python source location; the traced graph keeps the
        # Keras name scope of the op ("sequential/my_layer/Cumprod").
        names = [o.name for o in graph.get_operations() if o.type == op.group(1)]
        if names:
            layer = f"layer '{names[0].rsplit('/', 1)[0]}': "
    if "neither a custom op nor a flex op" in error:
        hint = "the op has no TFLite builtin kernel; replace the layer with supported ops"
    elif "quantiz" in error.lower():
        hint = f"the op has no {mode} kernel; use another layer/activation, or QAT"
    else:
        hint = "run with --debug for the converter's full log"
    return ConversionError(f"TFLite {mode} conversion failed: {layer}{error}", hint=hint)
