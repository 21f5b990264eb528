"""Local stand-ins for the systems crmsync talks to; never deployed with the functions."""
