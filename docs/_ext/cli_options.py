"""The ``cli-options`` directive: a table of ``suptickets train``'s options, generated from its
argparse parser (so the page cannot drift from the command), one row per option with its
default and, per preset, the value the preset gives it."""
from __future__ import annotations

from docutils import nodes
from docutils.parsers.rst import Directive


def _cell(text: str) -> nodes.entry:
    entry = nodes.entry()
    entry += nodes.paragraph(text=text)
    return entry


class CliOptions(Directive):
    has_content = False

    def run(self):
        from suptickets.train.cli import OPTIONS, _shown
        from suptickets.train.config import PRESETS, Config

        defaults = Config()
        out = []
        for title, options in OPTIONS:
            section = nodes.rubric(text=title)
            table = nodes.table()
            group = nodes.tgroup(cols=4)
            table += group
            for width in (22, 40, 14, 24):
                group += nodes.colspec(colwidth=width)
            head = nodes.thead()
            row = nodes.row()
            for text in ("option", "what", "default", "presets"):
                row += _cell(text)
            head += row
            group += head
            body = nodes.tbody()
            for name, _kind, text in options:
                field = name.replace("-", "_")
                default = getattr(defaults, field)
                presets = "; ".join(f"{p}: {_shown(v[field])}" for p, v in PRESETS.items() if field in v)
                row = nodes.row()
                for cell in ("--" + name, text or "", "-" if default is None else _shown(default), presets or "-"):
                    row += _cell(cell)
                body += row
            group += body
            out += [section, table]
        return out


def setup(app):
    app.add_directive("cli-options", CliOptions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
