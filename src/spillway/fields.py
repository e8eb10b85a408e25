"""The one text field every input schema uses for what a client sends.

Text a database cannot store is refused when the request is read, naming the field,
rather than when it is written: SQLite's driver raises on a lone surrogate (it cannot be
encoded as UTF-8) and PostgreSQL refuses NUL in text; either was a 500.
"""

import re

from marshmallow import fields

# NUL, and the surrogate code points, which are never characters on their own.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class Text(fields.String):
    """A string with neither NUL nor a lone surrogate in it (400 otherwise)."""

    default_error_messages = {
        "unstorable": "Contains a NUL or a lone surrogate, which no text can hold.",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if UNSTORABLE.search(text):
            raise self.make_error("unstorable")
        return text
