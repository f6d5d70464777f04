"""What a notebook shows for ``edgec.build``'s and ``edgec.check``'s reports: Jupyter
calls ``_repr_markdown_`` (the dataclasses' own repr of a build report runs to tens of
thousands of characters). Names in it come from untrusted files and are escaped."""

from __future__ import annotations

from edgec.report import Accuracy, Check
from edgec.report.markdown import markdown
from edgec.report.schema import (
    BuildReport,
    CheckReport,
    DataInfo,
    Memory,
    ModelInfo,
    TargetSection,
)

MEMORY = Memory(40_688, 6_096, 655_360, 196_608)
SECTION = TargetSection(
    "cortex-m4", "mcu", "ST STM32F446RE", False, MEMORY,
    [Check("ops", True, "all ops"), Check("ram", False, "TENSOR_ARENA_SIZE over | budget")],
)  # fmt: skip


def test_a_build_report_shows_its_verdict_accuracy_and_targets():
    report = BuildReport(
        ok=False,
        target="cortex-m4",
        model=ModelInfo("net", "net.keras", ops=["CONV_2D", "SOFTMAX"], parameters=38_282),
        memory=MEMORY,
        accuracy=Accuracy("top1", 97.0, 96.5, 300),
        data=DataInfo("d.npz", 300, 300, "classes"),
        checks=[Check("accuracy", True, "ok"), Check("litert_vs_tflm", False, "2 steps # h"),
                *SECTION.checks],
        targets=[SECTION],
    )  # fmt: skip
    shown = report._repr_markdown_()
    assert shown.startswith("### edgec build: `net` ❌ fail\n"), shown
    assert "- top\\-1: float 97%, int8 96.5% on 300 evaluation samples" in shown, shown
    assert "CONV\\_2D, SOFTMAX; 38,282 parameters" in shown, shown
    # the build's own failed check once; the target's failed check under its target
    assert shown.count("litert_vs_tflm") == 1 and "2 steps \\# h" in shown, shown
    assert "| `cortex-m4` | ST STM32F446RE | ❌ fail | 40,688 B / 655,360 B (6.2%) |" in shown
    assert "- `ram`: TENSOR\\_ARENA\\_SIZE over \\| budget" in shown, shown
    assert shown.count("`ram`") == 1, shown
    assert len(shown) < len(repr(report)) // 2


def test_a_check_report_shows_what_check_format_markdown_writes():
    name = "evil # <script>|x.tflite"
    report = CheckReport(False, name, 40_688, "0" * 64, ["CONV_2D"], [SECTION])
    shown = report._repr_markdown_()
    assert shown == markdown([SECTION], name)
    assert shown.startswith("### edgec check: `evil # <script>|x.tflite` ❌ fail")  # a code span
