"""Provider accounts: Google, Microsoft, and the memory provider for tests."""
