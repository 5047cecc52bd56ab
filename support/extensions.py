"""Flask extensions of the support service, created without an app."""

from flask_sqlalchemy import SQLAlchemy

# Objects stay readable after commit: the consumer emits what it just stored
# without one extra SELECT per object.
db = SQLAlchemy(session_options={"expire_on_commit": False})
