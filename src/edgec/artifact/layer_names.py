"""Which Keras layer made each op of a converted model, as ``model.summary()`` names it.

The converter names an op's tensors after the TensorFlow name scopes of the graph it
converted ("kws_like/conv2d/Relu;kws_like/conv2d/BiasAdd"), and those scopes are not the
layer names: TensorFlow makes every scope unique within the traced graph, so a Keras 3
model traces as ``kws_like_1/conv2d_1_2/Relu`` for its layer ``conv2d_1`` (its layer
``conv2d`` as ``kws_like_1/conv2d_1``), a QAT model as ``model/quant_conv2d``, and graph
outputs are renamed after the signature ("StatefulPartitionedCall:0"). Reading layer names
back out of scope strings is a guess; the mapping is instead recorded while the model is
traced (``edgec.pipeline.convert.trace_batch1``: each layer call notes the scope it runs
in) and read here, with the flatbuffer, without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # tflite_model imports stats, which imports this module
    from edgec.artifact.tflite_model import Operator, TfliteModel


# Layers whose PAD the converter fuses into the convolution after them (MobileNet's
# ZeroPadding2D before each strided DepthwiseConv2D): the op is that convolution's, and
# its row is named by it, not by the padding first in call order
_PADDING = frozenset({"ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"})


@dataclass(frozen=True)
class LayerNames:
    """The layers of the traced model and the name scopes their calls ran in.

    ``scopes``: each layer call's TensorFlow name scope -> the layer's name in the traced
    model, in call order. ``shown``: that name -> the name the user's ``model.summary()``
    shows (a TF-MOT wrapper's ``quant_conv2d`` is the user's ``conv2d``), for the user's
    layers only (not TF-MOT's own QuantizeLayer). ``kinds``: that
    name -> the layer's class name (a wrapper's: the wrapped layer's). ``outputs``: the
    layer computing each output of the traced function, by the key the converter's
    signature gives it ("output_0", ...; a dict output's own keys).
    """

    scopes: Mapping[str, str] = field(default_factory=dict)
    shown: Mapping[str, str] = field(default_factory=dict)
    kinds: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, str | None] = field(default_factory=dict)

    @cached_property
    def _order(self) -> dict[str, int]:
        """Each layer's place in call order (its first call)."""
        order: dict[str, int] = {}
        for layer in self.scopes.values():
            order.setdefault(layer, len(order))
        return order

    def layer_of_scope(self, tensor_name: str) -> str | None:
        """The layer whose call's scope (the longest one) holds this TensorFlow name."""
        parts = tensor_name.split(":")[0].split("/")
        for end in range(len(parts) - 1, 0, -1):
            layer = self.scopes.get("/".join(parts[:end]))
            if layer is not None:
                return layer
        return None

    def layers(self, model: TfliteModel, op: Operator) -> tuple[str, ...]:
        """The traced model's layers this op computes, in call order (several when the
        converter fused them: a Conv2D with its BatchNormalization and ReLU).

        From the names of the op's output tensors (each fused TensorFlow op a piece, split
        by ";"); a graph output renamed after the signature is its signature key's layer;
        an op whose outputs name no layer is named by its weights (constant inputs). A
        QUANTIZE or DEQUANTIZE the converter inserted ("tfl.dequantize") converts the
        tensor of the op before it: that op's layers.
        """
        found = self._from_names(model.tensors[i].name for i in op.outputs)
        if not found:
            for key, index in model.signature_outputs:
                layer = self.outputs.get(key)
                # the output, or the tensor --io-type's QUANTIZE/DEQUANTIZE made it from
                # (the SOFTMAX before a uint8 output was named "StatefulPartitionedCall:01")
                if layer is not None and {index, _converted_from(model, index)} & set(op.outputs):
                    found.add(layer)
        if not found:
            constants = (model.tensors[i] for i in op.inputs if i >= 0)
            found = self._from_names(t.name for t in constants if t.is_constant)
        if not found and op.name in ("QUANTIZE", "DEQUANTIZE") and op.inputs:
            before = model.producers.get(op.inputs[0])
            if before is not None:
                return self.layers(model, model.operators[before])
        order = self._order
        return tuple(sorted(found, key=lambda layer: order.get(layer, len(order))))

    def kernel_layers(self, model: TfliteModel, op: Operator) -> tuple[str, ...]:
        """``layers``, and the layer whose weights a kernel op reads (its second input): the
        converter may name a fused op's output after an op it absorbed (a Dense then
        RepeatVector's ExpandDims: "repeat_vector/ExpandDims"), and the Dense's kernel was
        then no layer's ("dense_5: no int8 kernel found", though its zeros were there)."""
        found = self.layers(model, op)
        if len(op.inputs) > 1 and op.inputs[1] >= 0:
            weights = self._from_names([model.tensors[op.inputs[1]].name]) - set(found)
            found += tuple(sorted(weights))
        return found

    def _from_names(self, names) -> set[str]:
        found = set()
        for name in names:
            for piece in name.split(";"):
                layer = self.layer_of_scope(piece)
                if layer is not None:
                    found.add(layer)
        return found

    def name(self, model: TfliteModel, op: Operator) -> str:
        """The op's row name: its first layer as ``model.summary()`` shows it (one of the
        user's layers before TF-MOT's own QuantizeLayer; a padding fused into the op is
        passed over), else the op's tensor name (an op no layer call made, e.g. the input's
        QUANTIZE)."""
        layers = self.layers(model, op)
        if not layers:
            return op.location
        users = [layer for layer in layers if layer in self.shown] or list(layers)
        first = next((layer for layer in users if self.kinds.get(layer) not in _PADDING), users[0])
        return self.shown.get(first, first)

    def kind(self, layer: str) -> str:
        return self.kinds.get(layer, "")


def _converted_from(model: TfliteModel, tensor: int) -> int | None:
    """The tensor a QUANTIZE or DEQUANTIZE made ``tensor`` from, if one did."""
    producer = model.producers.get(tensor)
    op = model.operators[producer] if producer is not None else None
    return op.inputs[0] if op is not None and op.name in ("QUANTIZE", "DEQUANTIZE") else None
