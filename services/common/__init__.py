"""Shared library of every imgsearch service: settings, logging, errors, images, HTTP."""
