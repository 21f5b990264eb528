"""Onboarding and grants: OAuth state and PKCE, the token vault, provider OAuth flows."""
