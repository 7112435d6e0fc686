"""Surveys taken page by page, every page POST persisted."""
