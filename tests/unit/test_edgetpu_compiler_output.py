"""edgetpu_compiler is not installable here (Google's apt repository): its output format
(summary lines and the -s operator table, as printed by compiler version 16) is parsed from
a transcript of that format."""

import pytest

from edgec.errors import ToolError
from edgec.targets.analyzers.edgetpu import parse_compiler_output

TRANSCRIPT = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 412 ms.

Input model: model.tflite
Input size: 43.93KiB
Output model: model_edgetpu.tflite
Output size: 120.50KiB
On-chip memory used for caching model parameters: 40.25KiB
On-chip memory remaining for caching model parameters: 7.91MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 6
Operation log: model_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU.
Number of operations that will run on Edge TPU: 4
Number of operations that will run on CPU: 2

Operator                       Count      Status

CONV_2D                        2          Mapped to Edge TPU
MAX_POOL_2D                    1          Operation is working on an unsupported data type
FULLY_CONNECTED                2          More than one subgraph is not supported
Compilation child process completed within timeout period.
Compilation succeeded!
"""


def test_compiler_output_is_parsed():
    result = parse_compiler_output(TRANSCRIPT)
    assert result["edgetpu_operations"] == 4 and result["cpu_operations"] == 2
    assert result["on_chip_parameter_bytes"] == round(40.25 * 1024)
    assert result["off_chip_parameter_bytes"] == 0
    assert result["operators"][0] == {"op": "CONV_2D", "count": 2, "status": "Mapped to Edge TPU"}
    assert [r["op"] for r in result["operators"]] == ["CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED"]


def test_output_without_counts_is_a_tool_error():
    with pytest.raises(ToolError, match="no operation counts"):
        parse_compiler_output("Edge TPU Compiler version 16\nInvalid model\n")
