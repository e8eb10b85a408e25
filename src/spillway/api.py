"""flask-smorest (request validation and the OpenAPI document) speaking Spillway's JSON
error shape: every error an operation answers is ``{"error": {"code", "message"}}``
(spillway.errors), and every JSON body is judged as the rest of Spillway judges one.
"""

from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint
from webargs.flaskparser import FlaskParser

from spillway.errors import ErrorSchema
from spillway.errors import decode_json_object


class Api(SmorestApi):
    """flask-smorest's request validation and OpenAPI document, with our error shape.

    Its own HTTPException handler is not registered: spillway.errors answers every error,
    and the document describes that shape.
    """

    ERROR_SCHEMA = ErrorSchema
    # No catch-all "default" response: each operation declares the statuses it answers.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self):
        pass


class BodyParser(FlaskParser):
    """webargs' parser as the API needs it: 400 (not 422) for invalid arguments, so the
    document says what errors.py answers; and every JSON body judged by
    errors.decode_json_object, as the purchase paths judge theirs: an empty body is a 400
    and another media type a 415 (webargs' own loader read both as "no fields", so a PATCH
    with a form answered 200), undecodable JSON a 400 (an integer past Python's digit limit
    or a body nested too deeply raised past webargs: a 500)."""

    DEFAULT_VALIDATION_STATUS = 400

    def load_json(self, req, schema):
        return decode_json_object(req.mimetype, req.get_data(cache=True))


# flask-smorest's one shared parser: set on import, before any view is declared.
Blueprint.ARGUMENTS_PARSER = BodyParser()
