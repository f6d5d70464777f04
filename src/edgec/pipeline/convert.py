"""Full-integer int8 conversion with the TFLite converter."""

from __future__ import annotations

import re

import numpy as np

from edgec._native_log import captured_native_stderr
from edgec.errors import ConversionError

IO_TYPES = ("int8", "uint8", "float32")


def convert_int8(
    model, calibration_x: np.ndarray, *, io_type: str = "int8", quiet: bool = True
) -> bytes:
    """Convert a tf_keras model to a full-integer TFLite flatbuffer.

    TFLITE_BUILTINS_INT8 only (no silent float fallback), per-channel weights, and a
    static batch size of 1: converting from a concrete function with a fixed input
    signature leaves no dynamic dimension in the flatbuffer (``from_keras_model`` would
    keep batch = -1, which Vela warns about and the Edge TPU rejects).
    """
    from edgec._tf import tf

    converter, graph = _batch1_converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    dtype = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[io_type]
    converter.inference_input_type = dtype
    converter.inference_output_type = dtype

    samples = calibration_x.astype(np.float32)

    def representative():
        for i in range(len(samples)):
            yield [samples[i : i + 1]]

    converter.representative_dataset = representative
    return _convert(converter, graph, quiet)


def convert_float(model, *, quiet: bool = True) -> bytes:
    """A plain float32 TFLite model (batch 1), for looking at a Keras model's layers."""
    converter, graph = _batch1_converter(model)
    return _convert(converter, graph, quiet)


def _batch1_converter(model):
    """A converter for ``model`` with a fixed batch-1 input signature, and its traced graph."""
    from edgec._tf import tf

    spec = tf.TensorSpec([1, *model.inputs[0].shape[1:]], tf.float32, name="input")
    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(spec)
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], model), concrete.graph


def _convert(converter, graph, quiet: bool) -> bytes:
    with captured_native_stderr(enabled=quiet) as log:
        try:
            return bytes(converter.convert())
        except Exception as exc:  # ConverterError, ValueError, RuntimeError ...
            raise _conversion_error(str(exc) + "\n" + log.text(), graph) from None


def _conversion_error(text: str, graph) -> ConversionError:
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
        hint = "the op has no int8 kernel; use another layer/activation, or QAT"
    else:
        hint = "run with --debug for the converter's full log"
    return ConversionError(f"TFLite int8 conversion failed: {layer}{error}", hint=hint)


PHONE_VARIANTS = ("float16", "dynamic-range")


def convert_variant(model, variant: str, *, quiet: bool = True) -> bytes:
    """A phone variant besides int8: float16 weights, or dynamic-range int8 weights.

    Both keep float32 activations and I/O (LiteRT/XNNPACK run them on a phone's CPU or
    GPU); like ``convert_int8`` they are converted from a batch-1 concrete function.
    """
    from edgec._tf import tf

    spec = tf.TensorSpec([1, *model.inputs[0].shape[1:]], tf.float32, name="input")
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    # Dynamic range (no representative dataset): the converter quantizes weights to int8 but
    # leaves constant tensors under 1024 elements in float32 (seen here: the digits CNN's
    # first conv kernel, 144 values, and its 640-value logits kernel stay float32).
    elif variant != "dynamic-range":
        raise ValueError(f"unknown variant {variant}")
    with captured_native_stderr(enabled=quiet) as log:
        try:
            return bytes(converter.convert())
        except Exception as exc:
            raise _conversion_error(str(exc) + "\n" + log.text(), concrete.graph) from None
