"""Child process for arena probes: ``python -m edgec.artifact._arena_worker MODEL INPUTS``.

Reads one arena size per line on stdin and answers ``1`` (allocates and invokes) or
``0`` (does not). The tflite-micro interpreter can SIGSEGV on some too-small arenas
instead of raising (shared/reference/facts.md, section 5), so the parent runs probes
here and treats a dead worker as "too small".
"""

from __future__ import annotations

import sys

import numpy as np


def main() -> None:
    from tflite_micro.python.tflite_micro import runtime

    with open(sys.argv[1], "rb") as f:
        model = f.read()
    inputs = np.load(sys.argv[2], allow_pickle=False)
    samples = [inputs[key] for key in sorted(inputs.files)]
    for line in sys.stdin:
        size = int(line)
        try:
            interpreter = runtime.Interpreter.from_bytes(model, arena_size=size)
            for i, sample in enumerate(samples):
                interpreter.set_input(sample, i)
            interpreter.invoke()
            answer = "1"
        except Exception as exc:  # too small, or the model cannot run at all
            answer = "0"
            print(f"edgec-probe {size}: {exc}", file=sys.stderr, flush=True)
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
