"""Signup: /api/v1/users."""

from flask_smorest import Blueprint

from spillway.extensions import db
from spillway.security.ratelimits import signup_limit
from spillway.users import tokens
from spillway.users.models import User
from spillway.users.schemas import SignupIn
from spillway.users.schemas import SignupOut
from spillway import apidoc

bp = Blueprint("users", __name__, url_prefix="/api/v1/users", description="Buyers.")


@bp.post("")
@signup_limit()
@bp.arguments(SignupIn)
@apidoc.errors(bp, *apidoc.WITH_BODY)
@bp.response(201, SignupOut)
def signup(fields):
    """Create a buyer and return a signed token carrying their id."""
    user = User(name=fields["name"])
    db.session.add(user)
    db.session.commit()
    return {"user_id": str(user.id), "token": tokens.issue(user.id)}
