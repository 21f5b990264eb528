"""Stores of connection state: Firestore in production, memory for tests."""
