"""The one text field every input schema uses for what a client sends.

Text a database cannot store is refused when the request is read, naming the field,
rather than when it is written: SQLite's driver raises on a lone surrogate (it cannot be
encoded as UTF-8) and PostgreSQL refuses NUL in text; either was a 500.
"""

import re

from marshmallow import fields
from marshmallow import validate

# NUL, and the surrogate code points, which are never characters on their own.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# What the OpenAPI document says of every Text: no NUL (a JSON Schema pattern cannot name
# lone surrogates, which no generator sends; they are refused all the same).
NO_NUL_PATTERN = "^[^\\x00]*$"


class Text(fields.String):
    """A string with neither NUL nor a lone surrogate in it (400 otherwise)."""

    default_error_messages = {
        "unstorable": "Contains a NUL or a lone surrogate, which no text can hold.",
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not any(isinstance(check, validate.Regexp) for check in self.validators):
            self.metadata.setdefault("pattern", NO_NUL_PATTERN)  # a Regexp is stricter

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if UNSTORABLE.search(text):
            raise self.make_error("unstorable")
        return text
