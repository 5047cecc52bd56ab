"""Flask extensions, created without an app and bound in `create_app`."""

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base of the portal's models."""


db = SQLAlchemy(model_class=Base)
