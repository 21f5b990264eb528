"""Local stand-ins for cloud services, for tests and `make dev`; never deployed."""
