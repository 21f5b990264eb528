"""The CRM side: connectors that speak the CRM contract."""
