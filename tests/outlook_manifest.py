"""Whether an Outlook add-in manifest is one Outlook and Microsoft AppSource would accept
in form: the XML manifest (an `OfficeApp` of type `MailApp`) checked against Microsoft's
published manifest schemas, without a network.

It covers the whole manifest: the basic settings (Id, Version, ProviderName, DefaultLocale,
DisplayName, Description, icons, SupportUrl, AppDomains), Hosts, Requirements, FormSettings,
Permissions and activation Rules; the add-in commands in `VersionOverrides` 1.0 and the
`VersionOverrides` 1.1 nested in it (ribbon buttons for reading and composing mail and for
appointments, resources); and the single sign-on settings (`WebApplicationInfo`) of 1.1.
A misspelt or misplaced element, a missing required one, an unknown attribute or a value
of the wrong form is reported, with its line.

It checks form only: not that resource ids match, that addresses answer, or that the
add-in's registration agrees with `WebApplicationInfo`. The schemas and where they come
from are in tests/schemas/outlook/ (README.md there).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lxml import etree

SCHEMAS = Path(__file__).resolve().parent / "schemas" / "outlook"
ROOT_SCHEMA = SCHEMAS / "OfficeAppManifestV1_1.xsd"


class _LocalSchemas(etree.Resolver):
    """Answers every schema import from the schema folder, by file name; anything else
    is refused rather than fetched."""

    def resolve(self, system_url, public_id, context):
        name = (system_url or "").replace("\\", "/").rsplit("/", 1)[-1]
        path = SCHEMAS / name
        if name.endswith(".xsd") and path.is_file():
            return self.resolve_filename(str(path), context)
        return self.resolve_string(b"", context)  # an empty answer fails the import


def _parser() -> etree.XMLParser:
    return etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)


@cache
def _schema() -> etree.XMLSchema:
    parser = _parser()
    parser.resolvers.add(_LocalSchemas())
    return etree.XMLSchema(etree.parse(str(ROOT_SCHEMA), parser))


def schema_errors(xml: bytes) -> list[str]:
    """What is wrong with the manifest `xml` as "line N: message" strings, in document
    order; an empty list when it is valid. XML that is not well-formed gives its one
    parse error."""
    try:
        document = etree.fromstring(xml, _parser())
    except etree.XMLSyntaxError as error:
        return [f"line {error.lineno}: {error.msg}"]
    schema = _schema()
    if schema.validate(document):
        return []
    return [f"line {entry.line}: {entry.message}" for entry in schema.error_log]
