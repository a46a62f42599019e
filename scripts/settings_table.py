"""Print docs/operating.md's settings table, generated from `service.settings.Settings` (a test keeps them in sync)."""

from __future__ import annotations

import html

from service.settings import Settings

HEADER = "| flag | environment variable | default | meaning |\n| --- | --- | --- | --- |\n"


def settings_table() -> str:
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "on" if default is True else "off" if default is False else str(default)
        flag = name.replace("_", "-")
        flag = f"--[no-]{flag}" if field.annotation is bool else f"--{flag}"
        meaning = html.escape(field.description or "", quote=False)
        rows.append(f"| `{flag}` | `SEQSERVE_{name.upper()}` | `{shown}` | {meaning} |")
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
