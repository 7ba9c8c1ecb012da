"""The web service: a REST API (FastAPI) and a page for clinicians over the records database and one model.

``app.create_app(settings)`` builds it; ``cxreader serve`` runs it with uvicorn. Routes are thin
(``routes/``), dependencies are ``Annotated`` aliases (``deps``), responses are pydantic models (``schemas``),
settings come from the environment (``settings``), and the work is done by the same core functions as
``cxreader screen`` (``analysis``).
"""
