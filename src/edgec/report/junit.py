"""``edgec check --format junit``: one <testsuite> per target, one <testcase> per check."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from edgec.report.schema import TargetSection


def junit_xml(sections: list[TargetSection], model: str) -> str:
    """One <testsuite> per target, one <testcase> per check; failed checks are <failure>s."""
    suites = ET.Element("testsuites", name=f"edgec check {model}")
    for section in sections:
        failures = sum(not c.ok for c in section.checks)
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=f"edgec.{section.target}",
            tests=str(len(section.checks)),
            failures=str(failures),
            errors="0",
        )
        for check in section.checks:
            case = ET.SubElement(
                suite, "testcase", classname=f"edgec.{section.target}", name=check.name
            )
            if not check.ok:
                ET.SubElement(case, "failure", message=check.detail[:500]).text = check.detail
            out = ET.SubElement(case, "system-out")
            out.text = f"{check.detail}\nmethod: {check.method}" + (
                f"\nvalue: {check.value:g} {check.unit}".rstrip() if check.value is not None else ""
            )
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"
