"""The jinja2 environment for the HTML pages of digest's two local servers (`preview`, `serve`).

Both serve a folder of their own page templates (not the email templates, which ``issue.render``
loads with its own rules), and both want the same settings: autoescaping, because pages show
article titles and addresses; ``StrictUndefined``, so a misspelt value is an error in the tests
rather than a blank on a page; and trimmed blocks, so the HTML reads like it was written. This
module sits at the bottom of the package because ``web`` and ``preview`` may not import each other.
"""

from __future__ import annotations

from pathlib import Path

import jinja2


def page_environment(folder: Path) -> jinja2.Environment:
    """A jinja2 environment over one server's page templates in ``folder``."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
