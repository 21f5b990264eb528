"""A local simulator of Microsoft's identity platform and Microsoft Graph v1.0 (never deployed)."""
