"""Microsoft 365 (Outlook contacts, calendar, To Do, mail) as a crmsync provider.

Its kit (`kit.KIT`) is what the service layer sees. This package holds the onboarding
(consent through Microsoft's identity platform with msal, the grant and the account it
binds a connection to), the Graph client (`client.GraphClient`) and the first of
Graph's adapters, Outlook contacts (`contacts.GraphContacts`). Until the calendar and To
Do adapters exist too, the kit builds no account: a Microsoft connection's cycle fails
with a clear reason and Microsoft is offered only where its OAuth client is set up.
"""
