"""``model_ops.h``: the op resolver with exactly the ops the model uses.

A device that lacks an op in its resolver fails at run time with "Didn't find op for
builtin opcode" (tflite-micro #2196, #302). Generating the resolver from the flatbuffer's
own op codes, with the resolver methods from the runtime's TOML (``AddConv2D`` per op, as
TFLM's micro_mutable_op_resolver.h names them), moves that failure to build time. Whether
TFLM has the op at all is asked of the installed tflite-micro before (``tflm_ops``).

Each op is registered with the narrowest kernel variant TFLM declares for the dtypes the
model gives it (``AddConv2D(tflite::Register_CONV_2D_INT8())``), so a CMSIS-NN build links
only that kernel; an op whose instances differ, or that has no variant, keeps the generic
registration. The header says which each op uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgec import __version__
from edgec.artifact.tflite_model import Graph, Operator, TfliteModel
from edgec.errors import ConversionError
from edgec.export.names import c_comment
from edgec.targets.profile import KernelVariant, Runtime


@dataclass(frozen=True, slots=True)
class Registration:
    """How ``model_ops.h`` registers one op: its ``Add*`` method, and the kernel variant
    passed to it (None: the generic registration) with the reason for the choice."""

    op: str
    method: str
    variant: KernelVariant | None
    reason: str

    @property
    def call(self) -> str:
        arg = f"tflite::{self.variant.registration}()" if self.variant else ""
        return f"{self.method}({arg})"


# TFLM's Signal ops (audio front ends) live in its signal library, not in the kernels.
SIGNAL_NOTE = (
    "\n// The Signal ops' kernels are TFLM's signal library (signal/micro/kernels/*.cc):"
    "\n// link it into the firmware with the other TFLM sources.\n//"
)


def resolver_methods(model: TfliteModel, runtime: Runtime) -> list[tuple[str, str]]:
    """(op name, ``AddXxx`` method) for each distinct op, in first-use order."""
    methods, missing = [], []
    ops = [op for _, op in model.all_operators]  # TFLM prepares every subgraph's ops
    for op_name in model.op_names:
        custom = any(op.custom for op in ops if op.name == op_name)
        table = runtime.custom_ops if custom else runtime.builtin_ops
        if op_name in table:
            methods.append((op_name, table[op_name]))
        else:
            missing.append(next(op for op in ops if op.name == op_name))
    if missing:
        raise ConversionError(
            f"edgec knows no {runtime.name} MicroMutableOpResolver method for "
            + "; ".join(op.describe() for op in missing)
            + ": the op resolver cannot be generated",
            hint="replace the layer with supported ops, or target another runtime",
        )
    return methods


def registrations(model: TfliteModel, runtime: Runtime) -> list[Registration]:
    """Each distinct op's registration, in first-use order: the variant that takes the
    dtypes of every instance of the op, else the generic one."""
    result = []
    for op_name, method in resolver_methods(model, runtime):
        instances = [(g, op) for g, op in model.all_operators if op.name == op_name]
        found = {_signature(g, op) for g, op in instances}
        choices = runtime.variants.get(op_name, ()) if not instances[0][1].custom else ()
        variant = next((v for v in choices if all(_fits(v, s) for s in found)), None)
        if variant is not None:
            reason = _describe(variant)
        elif not choices:
            reason = "generic: TFLM declares no narrower variant"
        elif len(found) > 1:
            reason = "generic: its instances differ (" + "; ".join(sorted(map(_text, found))) + ")"
        else:
            reason = f"generic: no variant for {_text(next(iter(found)))}"
        result.append(Registration(op_name, method, variant, reason))
    return result


_Signature = tuple[tuple[str, ...], tuple[str, ...]]


def _signature(model: Graph, op: Operator) -> _Signature:
    """The dtypes of an op's inputs and outputs by position ("-" for an omitted input)."""

    def dtype(i: int) -> str:
        return model.tensors[i].dtype if i >= 0 else "-"

    return tuple(map(dtype, op.inputs)), tuple(map(dtype, op.outputs))


def _fits(variant: KernelVariant, signature: _Signature) -> bool:
    inputs, outputs = signature
    return inputs[: len(variant.inputs)] == variant.inputs and (
        outputs[: len(variant.outputs)] == variant.outputs
    )


def _describe(variant: KernelVariant) -> str:
    text = "inputs " + ", ".join(variant.inputs)
    return text + (f"; outputs {', '.join(variant.outputs)}" if variant.outputs else "")


def _text(signature: _Signature) -> str:
    inputs, outputs = signature
    return f"inputs {', '.join(inputs)}; outputs {', '.join(outputs)}"


def model_ops_header(model: TfliteModel, runtime: Runtime, name: str, *, source: str) -> bytes:
    """A C++ header with ``<name>_register_ops(resolver)`` and the resolver type, N exact."""
    entries = registrations(model, runtime)
    guard = f"EDGEC_{name.upper()}_MODEL_OPS_H_"
    count = len(entries)
    calls = "\n".join(
        f"  // {c_comment(e.op)}: {c_comment(e.reason)}\n"
        f"  if (resolver.{e.call} != kTfLiteOk) return kTfLiteError;"
        for e in entries
    )
    op_list = c_comment(", ".join(e.op for e in entries), limit=2000)
    signal = any(e.op.startswith("Signal") for e in entries)
    headers = sorted({e.variant.header for e in entries if e.variant})
    includes = "".join(f'\n#include "{h}"' for h in headers)
    text = f"""// Generated by edgec {__version__} from {c_comment(source)}. Do not edit.
// The {count} op types {name} uses, read from its flatbuffer, registered with
// tflite-micro's MicroMutableOpResolver (ops: {op_list}).
// Each op gets the narrowest kernel variant TFLM declares for the dtypes the model gives
// it (with CMSIS-NN only that kernel is linked; the reference kernels alias them to the
// generic registration), or the generic registration where none fits.
//{SIGNAL_NOTE if signal else ""}
//   {name}_op_resolver resolver;
//   if ({name}_register_ops(resolver) != kTfLiteOk) {{ /* out of slots */ }}
//   tflite::MicroInterpreter interpreter(tflite::GetModel(g_{name}_model_data), resolver,
//                                        tensor_arena, {name}::kTensorArenaSize);
#ifndef {guard}
#define {guard}

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"{includes}

constexpr unsigned int k{_camel(name)}OpCount = {count};
using {name}_op_resolver = tflite::MicroMutableOpResolver<{count}>;

inline TfLiteStatus {name}_register_ops({name}_op_resolver& resolver) {{
{calls}
  return kTfLiteOk;
}}

#endif  // {guard}
"""
    return text.encode()


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))
