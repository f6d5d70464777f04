"""Small generated reproductions of what real published models carry, and edgec misjudged.

Each builds, through ``TfliteBuilder``, a few-byte model with one trait of a model in
``../shared/real-models`` (which tests cannot rely on):

- ``dense_int8(batch_signature=-1)`` (in tflite_builder): a dynamic batch in
  ``shape_signature`` only, as the MLCommons reference models and hello_world carry;
- ``old_converter_bias``: a 1-D bias whose per-channel quantization names its filter's
  axis (3), as TOCO wrote TFLM's person_detect.tflite;
- ``signal_window``: a TFLM Signal op (SignalWindow on int16 audio), as micro_speech's
  audio preprocessor uses;
- ``quantize_int32``: a QUANTIZE with an int32 output, which TFLM's kernel takes;
- ``hard_swish_int16``: an op TFLM registers whose kernel refuses int16 (at Invoke);
- ``vela_compiled``: Vela's output form, a custom ``ethos-u`` op with its uint8 command
  stream, weights and scratch tensors and Vela's metadata, as person_detect_vela.tflite;
- ``edgetpu_compiled``: the Edge TPU compiler's output form, a custom
  ``edgetpu-custom-op``.
"""

from __future__ import annotations

import struct

import numpy as np
from flatbuffers import flexbuffers

from tests.support.tflite_builder import TfliteBuilder, schema

# Vela's driver payload config word (driver_actions.build_config_word): MACs per cycle as
# log2 in bits 0-3, SHRAM KiB in bits 8-15, product in bits 28-31 (0: Ethos-U55)
VELA_CONFIG = {"ethos-u55-128": 0x1807, "ethos-u55-256": 0x3008}


def old_converter_bias() -> bytes:
    """DEPTHWISE_CONV_2D whose 1-D bias says quantized_dimension 3 (its filter's axis)."""
    b = TfliteBuilder()
    x = b.tensor("input", (1, 4, 4, 2), scale=0.05, zero_point=-3)
    w = b.constant(
        "dw/weights",
        np.arange(-9, 9, dtype=np.int8).reshape(1, 3, 3, 2),
        scale=[0.01, 0.02],
        zero_point=[0, 0],
        axis=3,
    )
    bias = b.constant(
        "dw/bias", np.array([5, -5], np.int32), scale=[0.0005, 0.001], zero_point=[0, 0], axis=3
    )
    y = b.tensor("output", (1, 2, 2, 2), scale=0.1, zero_point=0)
    options = schema.DepthwiseConv2DOptionsT()
    options.strideW = options.strideH = options.depthMultiplier = 1
    options.padding = schema.Padding.VALID
    b.op("DEPTHWISE_CONV_2D", [x, w, bias], [y], options=options)
    return b.build(inputs=[x], outputs=[y])


def signal_window(samples: int = 8) -> bytes:
    """int16 audio -> SignalWindow (TFLM's signal library) -> int16."""
    b = TfliteBuilder()
    x = b.tensor("audio", (1, samples), "int16")
    window = b.constant("window", np.full(samples, 4096, np.int16))
    y = b.tensor("windowed", (1, samples), "int16")
    b.op("CUSTOM", [x, window], [y], custom_code="SignalWindow",
         custom_options=flexbuffers.Dumps({"shift": 12}))  # fmt: skip
    return b.build(inputs=[x], outputs=[y])


def quantize_int32() -> bytes:
    """int8 input -> QUANTIZE -> int32 output."""
    b = TfliteBuilder()
    x = b.tensor("input", (1, 4), scale=0.05, zero_point=-3)
    y = b.tensor("output", (1, 4), "int32", scale=0.001, zero_point=0)
    b.op("QUANTIZE", [x], [y])
    return b.build(inputs=[x], outputs=[y])


def hard_swish_int16() -> bytes:
    """int16 HARD_SWISH: registered in TFLM, whose kernel takes int8 and float only."""
    b = TfliteBuilder()
    x = b.tensor("input", (1, 4), "int16", scale=0.01)
    y = b.tensor("output", (1, 4), "int16", scale=0.01)
    b.op("HARD_SWISH", [x], [y])
    return b.build(inputs=[x], outputs=[y])


def vela_command_stream(accelerator: str = "ethos-u55-128") -> bytes:
    """Vela's driver payload header: COP1, the config action and its words, a NOP, the
    command stream action, then two register commands (contents do not matter here)."""
    words = [
        int.from_bytes(b"COP1", "little"),
        0x00100001,  # DACommands.Config, patch 1
        VELA_CONFIG[accelerator],
        0x10060000,  # id word
        0x5,  # NOP
        0x00020002,  # DACommands.CmdStream, 2 words
        0x00000000,
        0x00000000,
    ]
    return struct.pack(f"<{len(words)}I", *words)


def vela_compiled(
    accelerator: str = "ethos-u55-128",
    *,
    scratch: int = 1024,
    offline_plan: bool = True,
) -> bytes:
    """A model as Vela writes it: one ``ethos-u`` op on an int8 input.

    Inputs are Vela's: command stream and weights (constant uint8), scratch and
    scratch_fast (uint8 arena areas), then the feature map; Vela's metadata says its
    version and plans every arena tensor at offset 0 (as its Shared_Sram output does).
    """
    b = TfliteBuilder(description="Vela 3.11.0 Optimised")
    stream = np.frombuffer(vela_command_stream(accelerator), np.uint8)
    command = b.constant("_split_1_command_stream", stream)
    flash = b.constant("_split_1_flash", np.arange(64, dtype=np.uint8))
    area = b.tensor("_split_1_scratch", (scratch,), "uint8")
    fast = b.tensor("_split_1_scratch_fast", (scratch,), "uint8")
    x = b.tensor("input", (1, 8, 8, 1), scale=0.05, zero_point=-3)
    y = b.tensor("output", (1, 2), scale=0.1, zero_point=0)
    b.op("CUSTOM", [command, flash, area, fast, x], [y], custom_code="ethos-u",
         custom_options=bytes([1, 4, 1]))  # fmt: skip
    b.model.metadata["vela_version"] = b"3.11.0"
    if offline_plan:
        # [version, subgraphs, n, the offset of each tensor in index order]: -1 for constants
        offsets = [-1 if t.array is not None else 0 for t in b.subgraph.tensors]
        plan = np.array([0, 1, len(offsets), *offsets], dtype="<i4")
        b.model.metadata["OfflineMemoryAllocation"] = plan.tobytes()
    return b.build(inputs=[x], outputs=[y])


def edgetpu_compiled() -> bytes:
    """A model as the Edge TPU compiler writes it: one ``edgetpu-custom-op`` (its custom
    options hold the compiled executable; any bytes here)."""
    b = TfliteBuilder()
    x = b.tensor("input", (1, 8, 8, 3), "uint8", scale=0.0078125, zero_point=128)
    y = b.tensor("output", (1, 4), "uint8", scale=0.00390625, zero_point=0)
    b.op("CUSTOM", [x], [y], custom_code="edgetpu-custom-op", custom_options=bytes(256))
    return b.build(inputs=[x], outputs=[y])
