"""Microsoft 365 (Outlook contacts, calendar, To Do, mail) as a crmsync provider.

Its kit (`kit.KIT`) is what the service layer sees. This package holds the onboarding
(consent through Microsoft's identity platform with msal, the grant and the account it
binds a connection to), the Graph client (`client.GraphClient`) and Graph's adapters:
Outlook contacts (`contacts.GraphContacts`), the calendar (`calendar.GraphCalendar`)
and To Do (`todo.GraphTasks`), one `account.MicrosoftAccount` per cycle, and Graph's
change notifications (`push`). Mail recording is still to come.
"""
