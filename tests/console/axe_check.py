"""axe-core (tests/console/vendor/axe.min.js, test-only) run in a console page: the serious and
critical violations it finds, in words, so an assertion failing says what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"


def serious_violations(page: Any) -> list[str]:
    # Evaluated by Playwright (the DevTools protocol, which the page's CSP does not govern), not
    # added as a <script>: the console's CSP allows only its own scripts, and axe is no part of it.
    page.evaluate(AXE.read_text() + "\n;true")
    found = page.evaluate(
        """async () => {
          const result = await axe.run(document, { resultTypes: ["violations"] });
          return result.violations
            .filter((v) => v.impact === "serious" || v.impact === "critical")
            .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
        }"""
    )
    return list(found)
