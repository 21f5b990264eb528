"""E-mail recording (EML-1..5): a message a user tags in their mailbox becomes one history
item on the CRM contact or lead it concerns.

- `reader`: a raw RFC 5322 message (as the mailbox APIs give a message whole) read
  into what a history item holds, whatever the message's encodings and MIME
  oddities; one that cannot be read at all raises `Unreadable`, with a reason that
  holds nothing of the message.
- `quotes`: the quoted replies a message carries below its own text, trimmed.
- `html`: HTML-only mail as plain text.

Nothing here logs, and nothing here holds a message body longer than the call that
reads it.
"""
