"""The service's web pages for advisers, providers, the governance board, data officers and
citizens (GOV.UK Design System, server-rendered, working without JavaScript).
`mount_pages(app)` adds them to the FastAPI app; every page goes through `adapter`."""

from joinedup.pages.web.routes import mount_pages

__all__ = ["mount_pages"]
