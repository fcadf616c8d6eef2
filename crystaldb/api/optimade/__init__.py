"""OPTIMADE v1.2 beside GraphQL: the consortium's REST API over the same structures."""

from crystaldb.api.optimade.routes import routes

__all__ = ["routes"]
