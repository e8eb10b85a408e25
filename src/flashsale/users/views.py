"""Signup: /api/v1/users."""

from flask import current_app
from flask_smorest import Blueprint

from flashsale import apidoc
from flashsale.extensions import db
from flashsale.users import tokens
from flashsale.users.models import User
from flashsale.users.schemas import SignupIn
from flashsale.users.schemas import SignupOut
from spillway.security.ratelimits import limiter

bp = Blueprint("users", __name__, url_prefix="/api/v1/users", description="Buyers.")


def signup_limit():
    """SPILLWAY_SIGNUP_LIMIT_PER_IP, on top of the per-address default: a limit per buyer
    is a limit per account, and this is what stops minting accounts (SECURITY.md)."""
    return limiter.limit(
        lambda: current_app.config["RATELIMIT_SIGNUP"], scope="signup", override_defaults=False
    )


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
