"""`spillway seed-demo`: a catalog to look at on a fresh install."""

import click
from flask.cli import with_appcontext
from sqlalchemy import func
from sqlalchemy import select

from flashsale.catalog import service
from flashsale.catalog.models import Product
from flashsale.extensions import db

DEMO_PRODUCTS = [
    ("Paper lantern", "Folds flat; glows warm.", 1299),
    ("Cast-iron kettle", "Whistles when it is ready.", 4500),
    ("Tea sampler", "Twelve teas, one of each.", 2200),
    ("Bamboo whisk", "For matcha, by hand.", 1800),
    ("Stoneware cup", "Fits two hands in winter.", 1500),
    ("Silk fan", "Hand-painted plum blossoms.", 3200),
]


@click.command("seed-demo")
@click.option("--if-empty", is_flag=True, help="Do nothing when products already exist.")
@with_appcontext
def seed_demo_command(if_empty):
    """Add the demo products (flash sales join them once sales exist)."""
    existing = db.session.scalar(select(func.count(Product.id)))
    if if_empty and existing:
        click.echo(f"seed-demo: {existing} products already there; nothing to do")
        return
    for name, description, price_cents in DEMO_PRODUCTS:
        service.create_product(
            {
                "name": name,
                "description": description,
                "price_cents": price_cents,
                "image_url": None,
            }
        )
    click.echo(f"seed-demo: added {len(DEMO_PRODUCTS)} products")
