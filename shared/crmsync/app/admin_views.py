"""Views of the app (see crmsync.app): filled in with their pages."""
