"""A local stand-in for Google's OAuth, Calendar v3, Tasks v1 and People v1 APIs that the
real google-api-python-client and google-auth talk to unchanged. Never deployed."""
