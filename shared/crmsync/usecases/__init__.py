"""What users and tenant admins do from the web app and its JSON API, one module per
concern: their settings, their queue of held changes, their sync history, a tenant's
users. Each use case takes the `Services` and ids the caller was already allowed to
act on (the app checks who is signed in); a bad value is refused with
`service.Refused` and its reason. SyncWorld, the app and the CLI call the same use
cases, so what the tests run is what production runs."""
