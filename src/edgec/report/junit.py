"""``edgec check --format junit``: one <testsuite> per target, one <testcase> per check.

The file is read by CI's JUnit parsers, which reject anything but well-formed XML 1.0:
names from the model (tensors, custom ops) and the profile can hold ESC, NUL or BEL,
which XML cannot carry even escaped. Every value goes through :func:`xml_text`.
"""

from __future__ import annotations

from xml.etree import ElementTree as ET

from edgec.errors import printable
from edgec.report.schema import TargetSection

_NON_XML = dict.fromkeys([0xFFFE, 0xFFFF], "?")  # noncharacters XML 1.0 excludes too


def xml_text(text: object, *, lines: bool = False) -> str:
    """``text`` with every character XML 1.0 cannot hold (and every control, format or
    line-separator character: printable) replaced by "?"; ``lines`` keeps line breaks."""
    parts = str(text).split("\n") if lines else [str(text)]
    return "\n".join(printable(part).translate(_NON_XML) for part in parts)


def junit_xml(sections: list[TargetSection], model: str) -> str:
    """One <testsuite> per target, one <testcase> per check; failed checks are <failure>s."""
    suites = ET.Element("testsuites", name=xml_text(f"edgec check {model}"))
    for section in sections:
        failures = sum(not c.ok for c in section.checks)
        target = xml_text(section.target)
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=f"edgec.{target}",
            tests=str(len(section.checks)),
            failures=str(failures),
            errors="0",
        )
        for check in section.checks:
            case = ET.SubElement(
                suite, "testcase", classname=f"edgec.{target}", name=xml_text(check.name)
            )
            detail = xml_text(check.detail)
            if not check.ok:
                ET.SubElement(case, "failure", message=detail[:500]).text = detail
            out = ET.SubElement(case, "system-out")
            out.text = xml_text(
                f"{check.detail}\nmethod: {check.method}"
                + (
                    f"\nvalue: {check.value:g} {check.unit}".rstrip()
                    if check.value is not None
                    else ""
                ),
                lines=True,
            )
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"
