"""Print one closing line summing pytest JUnit XML reports: 'total: N passed, N failed, N skipped'."""
import sys
import xml.etree.ElementTree as ET

passed = failed = skipped = 0
for path in sys.argv[1:]:
    for suite in ET.parse(path).getroot().iter("testsuite"):
        tests, skips = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
        fails = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        passed += tests - skips - fails
        failed += fails
        skipped += skips
print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
