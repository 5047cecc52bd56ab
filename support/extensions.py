"""Flask extensions of the support service, created without an app."""

from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()
