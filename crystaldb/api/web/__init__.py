"""The web explorer: HTML pages that run the GraphQL schema in-process (so a page and the API
answer the same question the same way), with every asset served from the installation."""

from crystaldb.api.web.routes import graphiql_page, web_routes

__all__ = ["graphiql_page", "web_routes"]
