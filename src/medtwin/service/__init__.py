"""medtwin as a web service (``medtwin serve``): a FastAPI app over the workflow layer.

A front end beside :mod:`medtwin.cli` (neither imports the other; the CLI starts uvicorn with the import string
``medtwin.service.app:create_app``).  Modules: :mod:`~medtwin.service.settings` (environment),
:mod:`~medtwin.service.app` (factory, lifespan, logging, errors), :mod:`~medtwin.service.auth` (users, roles,
tokens, CSRF), :mod:`~medtwin.service.events` (live event broker), :mod:`~medtwin.service.jobs` (background
jobs), :mod:`~medtwin.service.api` (the resource routers).
"""
