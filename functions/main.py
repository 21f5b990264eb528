"""Cloud Functions entry points of crmsync.

They arrive with the serverless-runtime issue; until then this module defines none.
"""
