"""Google Workspace: OAuth, Calendar, Tasks and People behind the ProviderAccount port."""
