"""Check requests against Discord's published OpenAPI description of HTTP API v10.

:class:`DiscordSpec` loads Discord's own machine-readable description (OpenAPI 3.1.0, the
``specs/openapi.json`` file of the ``discord/discord-api-spec`` repository), matches a request to
its operation by method and path template (``POST /channels/{channel_id}/messages``) and
validates the JSON body (for a multipart request: its ``payload_json`` part) and the query
string with ``jsonschema``'s Draft 2020-12 validator, ``$ref`` resolved through a
``referencing`` registry built from the document. A failure is reported the way Discord reports
it: ``50035 Invalid Form Body`` with the nested ``errors`` tree (field path →
``{"_errors": [{"code", "message"}]}``). Validators are built once per operation and cached.

The module needs neither aiohttp nor the emulator; :mod:`sandbox.discord_emulator` calls
:meth:`DiscordSpec.check` from one place for every REST request it serves.

Where the description and Discord's documentation disagree
-----------------------------------------------------------
The documentation (https://discord.com/developers/docs) is what Discord enforces, so the
loaded document is amended in these places before any validator is built
(:data:`DOCUMENTED_DIFFERENCES`):

1. **Snowflakes.** The description types every snowflake (``SnowflakeType``) as a decimal
   string. Discord also accepts JSON integers in requests, and discord.py sends integers for
   ``recipient_id`` (``POST /users/@me/channels``), ``allowed_mentions.users`` / ``roles``
   and ``message_reference.*``. Docs, "Reference › Snowflakes": IDs are *returned* as strings
   to protect clients without 64-bit integers. A non-negative integer is accepted.
2. **Message content.** ``MessageCreateRequest.content``, ``MessageEditRequestPartial.content``
   (and ``BaseCreateMessageCreateRequest`` / ``SDKMessageRequest``) allow 4,000 characters;
   docs, "Create Message": "Message contents (up to 2000 characters)". 2,000 is enforced.
3. **Modal components.** ``ModalInteractionCallbackRequestData.components`` allows 40 items;
   docs, "Interaction Response Object › Modal": "Between 1 and 5 (inclusive) components that
   make up the modal". 5 is enforced.

Rules the description cannot express (5 action rows unless ``IS_COMPONENTS_V2``, the 6,000
character embed total, unique ``custom_id`` values, row widths) are checked by the emulator
itself (:mod:`sandbox.discord_emulator`), after this module.

Format assertions (``format: uri``, ``date-time``) are annotations in Draft 2020-12 and are not
asserted, as ``jsonschema`` does by default. Unknown fields are ignored, as Discord does.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = [
    "DOCUMENTED_DIFFERENCES",
    "SPEC_FILE_NAME",
    "DiscordSpec",
    "Operation",
    "QueryParameter",
    "find_spec_file",
    "form_errors",
    "load_default_spec",
]

_log = logging.getLogger(__name__)

JSON = dict[str, Any]

#: File name of Discord's OpenAPI description in ``shared/specs/``.
SPEC_FILE_NAME = "discord-openapi.json"
#: URI under which the description is registered; ``$ref``s resolve against it.
SPEC_URI = "urn:discord:api:v10:openapi"

_SNOWFLAKE = {
    "anyOf": [
        {"type": "string", "pattern": "^(0|[1-9][0-9]*)$"},
        {"type": "integer", "minimum": 0},
    ]
}

#: (JSON pointer into the document, replacement value, the documentation's rule). Applied by
#: :meth:`DiscordSpec.from_document`; see the module docstring.
DOCUMENTED_DIFFERENCES: tuple[tuple[str, Any, str], ...] = (
    (
        "/components/schemas/SnowflakeType",
        _SNOWFLAKE,
        "Reference › Snowflakes: Discord accepts integer snowflakes in requests",
    ),
    *(
        (
            f"/components/schemas/{name}/properties/content/maxLength",
            2000,
            "Create Message: message contents up to 2000 characters",
        )
        for name in (
            "MessageCreateRequest",
            "MessageEditRequestPartial",
            "BaseCreateMessageCreateRequest",
            "SDKMessageRequest",
        )
    ),
    (
        "/components/schemas/ModalInteractionCallbackRequestData/properties/components/maxItems",
        5,
        "Interaction Response › Modal: between 1 and 5 components",
    ),
)


def _pointer_parts(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _apply_differences(document: JSON) -> None:
    for pointer, value, _rule in DOCUMENTED_DIFFERENCES:
        *parents, last = _pointer_parts(pointer)
        node: Any = document
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node:
            node[last] = copy.deepcopy(value)


# --------------------------------------------------------------------------------------------
# Errors in Discord's shape
# --------------------------------------------------------------------------------------------


def _alternative_index(error: ValidationError) -> int | None:
    path = error.relative_schema_path
    return path[0] if path and isinstance(path[0], int) else None


def _rules_out(error: ValidationError) -> bool:
    """Whether this error shows the alternative is not meant for the instance at all.

    An alternative is ruled out by the instance's JSON type (``{"type": "null"}`` against an
    object) or by its discriminator, the ``type`` property (component and callback unions).
    """
    rel = list(error.relative_path)
    if not rel and error.validator == "type":
        return True
    return rel == ["type"] and error.validator in ("enum", "const")


def _leaf_errors(error: ValidationError) -> list[ValidationError]:
    """Descend into a failed ``oneOf``/``anyOf`` to the alternative the instance was meant for."""
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return [error]
    by_alt: dict[int, list[ValidationError]] = {}
    for sub in error.context:
        index = _alternative_index(sub)
        if index is not None:
            by_alt.setdefault(index, []).append(sub)
    meant = [errs for errs in by_alt.values() if not any(_rules_out(e) for e in errs)]
    if len(meant) != 1:
        if not meant:
            return [error]
        chosen = best_match(e for errs in meant for e in errs)
        return _leaf_errors(chosen) if chosen is not None else [error]
    leaves: list[ValidationError] = []
    for sub in meant[0]:
        leaves.extend(_leaf_errors(sub))
    return leaves


def _schema_choices(error: ValidationError) -> str:
    values: list[str] = []
    for alt in error.validator_value if isinstance(error.validator_value, list) else []:
        if isinstance(alt, dict) and "$ref" in alt:
            values.append(str(alt["$ref"]).rsplit("/", 1)[-1])
        elif isinstance(alt, dict) and "type" in alt:
            values.append(str(alt["type"]))
    return ", ".join(values)


def _describe(error: ValidationError) -> tuple[list[str | int], str, str]:
    """Map one ``jsonschema`` error to (path, Discord error code, message)."""
    path: list[str | int] = list(error.absolute_path)
    kind, expected, value = error.validator, error.validator_value, error.instance
    if kind == "required":
        missing = re.match(r"^'(.+)' is a required property$", error.message)
        path.append(missing.group(1) if missing else "?")
        return path, "BASE_TYPE_REQUIRED", "This field is required"
    if kind in ("maxLength", "maxItems"):
        return path, "BASE_TYPE_MAX_LENGTH", f"Must be {expected} or fewer in length."
    if kind in ("minLength", "minItems"):
        return path, "BASE_TYPE_MIN_LENGTH", f"Must be {expected} or more in length."
    if kind in ("minimum", "exclusiveMinimum"):
        return path, "NUMBER_TYPE_MIN", f"Int value should be greater than or equal to {expected}."
    if kind in ("maximum", "exclusiveMaximum"):
        return path, "NUMBER_TYPE_MAX", f"Int value should be less than or equal to {expected}."
    if kind in ("enum", "const"):
        choices = expected if isinstance(expected, list) else [expected]
        shown = ", ".join(json.dumps(c) for c in choices)
        return path, "BASE_TYPE_CHOICES", f"Value must be one of ({shown})."
    if kind == "pattern":
        return path, "STRING_TYPE_REGEX", f"String value did not match validation regex {expected}."
    if kind in ("oneOf", "anyOf"):
        return (
            path,
            "UNION_TYPE_CHOICES",
            f"Value {json.dumps(value)[:60]} matches none of ({_schema_choices(error)}).",
        )
    if kind == "type":
        wanted = expected if isinstance(expected, list) else [expected]
        names = [w for w in wanted if w != "null"] or wanted
        code = {
            "object": "MODEL_TYPE_CONVERT",
            "array": "LIST_TYPE_CONVERT",
            "integer": "NUMBER_TYPE_COERCE",
            "number": "NUMBER_TYPE_COERCE",
            "boolean": "BASE_TYPE_BOOLEAN",
        }.get(str(names[0]), "BASE_TYPE_STRING")
        return path, code, f"Must be of type {' or '.join(map(str, wanted))}."
    if kind == "uniqueItems":
        return path, "LIST_ITEM_VALUE_DUPLICATE", "List items must be unique."
    return path, f"SCHEMA_{str(kind).upper()}", error.message[:200]


def form_errors(errors: Iterable[ValidationError], prefix: Sequence[str | int] = ()) -> JSON:
    """Build Discord's nested ``errors`` object from ``jsonschema`` errors.

    Parameters
    ----------
    errors:
        Errors from a validator's ``iter_errors``.
    prefix:
        Path prepended to every error (e.g. the query parameter's name).

    Returns
    -------
    dict
        ``{"embeds": {"0": {"title": {"_errors": [{"code": ..., "message": ...}]}}}}``
        (Discord: "Error Messages" in "Reference"); ``{}`` when there is no error.
    """
    tree: JSON = {}
    for error in errors:
        for leaf in _leaf_errors(error):
            path, code, message = _describe(leaf)
            node = tree
            for part in (*prefix, *path):
                node = node.setdefault(str(part), {})
            entry = {"code": code, "message": message}
            bucket = node.setdefault("_errors", [])
            if entry not in bucket:
                bucket.append(entry)
    return tree


# --------------------------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------------------------


class QueryParameter(NamedTuple):
    """A query parameter of an operation: its schema, whether required, its JSON pointer."""

    schema: JSON
    required: bool
    pointer: str


@dataclass
class Operation:
    """One operation of the description: a method on a path template.

    Attributes
    ----------
    method:
        Upper-case HTTP method.
    template:
        The path template as written in the description, e.g. ``/channels/{channel_id}/messages``.
    operation_id:
        The description's ``operationId`` (e.g. ``create_message``).
    body_pointer:
        JSON pointer to the ``application/json`` request-body schema, or ``None`` when the
        operation takes no JSON body.
    query:
        Query parameters by name.
    """

    method: str
    template: str
    operation_id: str
    body_pointer: str | None
    query: dict[str, QueryParameter] = field(default_factory=dict)


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    pattern = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{pattern}$")


_QUERY_BOOLEANS = {
    "True": True,
    "true": True,
    "1": True,
    "False": False,
    "false": False,
    "0": False,
}


def _coerce_query(value: str, schema: JSON) -> Any:
    """Read a query-string value as the JSON value its schema types it as.

    Booleans follow Discord's documentation ("Reference › Boolean Query Strings"): ``True``,
    ``true`` or ``1`` is true, ``False``, ``false`` or ``0`` is false (discord.py sends
    ``with_response=1``, ``wait=1``).
    """
    types = schema.get("type")
    kinds = types if isinstance(types, list) else [types]
    if "integer" in kinds and re.fullmatch(r"-?\d+", value):
        return int(value)
    if "number" in kinds:
        try:
            return float(value)
        except ValueError:
            return value
    if "boolean" in kinds and value in _QUERY_BOOLEANS:
        return _QUERY_BOOLEANS[value]
    return value


class DiscordSpec:
    """Discord's OpenAPI description, ready to check requests.

    Build it with :meth:`from_file` or :meth:`from_document` (or the cached
    :func:`load_default_spec`); then call :meth:`check` per request.

    Parameters
    ----------
    document:
        The parsed OpenAPI 3.1 document. It is amended in place by
        :data:`DOCUMENTED_DIFFERENCES` (pass a copy to keep the original).
    source:
        Where the document came from, for messages.
    """

    def __init__(self, document: JSON, *, source: str = "<document>") -> None:
        _apply_differences(document)
        self.document = document
        self.source = source
        self.version = str(document.get("info", {}).get("version", "?"))
        resource: Resource[Any] = Resource.from_contents(
            document, default_specification=DRAFT202012
        )
        self.registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
        self._by_length: dict[int, list[tuple[int, re.Pattern[str], dict[str, Operation]]]] = {}
        self._validators: dict[str, Draft202012Validator] = {}
        for template, item in document.get("paths", {}).items():
            ops: dict[str, Operation] = {}
            shared = item.get("parameters", [])
            for method, raw in item.items():
                if method == "parameters" or not isinstance(raw, dict):
                    continue
                ops[method.upper()] = self._operation(method.upper(), template, raw, shared)
            segments = template.strip("/").split("/")
            literal = sum(1 for s in segments if not s.startswith("{"))
            self._by_length.setdefault(len(segments), []).append(
                (literal, _template_regex(template), ops)
            )
        for entries in self._by_length.values():
            entries.sort(key=lambda entry: -entry[0])  # literal segments win over parameters

    @classmethod
    def from_file(cls, path: str | Path) -> DiscordSpec:
        """Load the description from a JSON file.

        Raises
        ------
        OSError
            The file cannot be read.
        ValueError
            It is not JSON.
        """
        text = Path(path).read_text(encoding="utf-8")
        return cls(json.loads(text), source=str(path))

    @staticmethod
    def _operation(method: str, template: str, raw: JSON, shared: list[JSON]) -> Operation:
        base = "/paths/" + _escape(template)
        body_pointer = None
        if "application/json" in raw.get("requestBody", {}).get("content", {}):
            body_pointer = f"{base}/{method.lower()}/requestBody/content/application~1json/schema"
        query: dict[str, QueryParameter] = {}
        located = [
            (f"{base}/parameters", shared),
            (f"{base}/{method.lower()}/parameters", raw.get("parameters", [])),
        ]
        for prefix, params in located:
            for index, param in enumerate(params):
                if param.get("in") == "query" and "name" in param:
                    query[param["name"]] = QueryParameter(
                        param.get("schema", {}),
                        bool(param.get("required")),
                        f"{prefix}/{index}/schema",
                    )
        return Operation(method, template, str(raw.get("operationId", "")), body_pointer, query)

    def match(self, method: str, path: str) -> Operation | None:
        """The operation a request is for, or ``None`` when the description has none.

        Parameters
        ----------
        method:
            HTTP method (any case).
        path:
            Request path below the API base, e.g. ``/channels/1/messages`` (no query string).
        """
        segments = path.strip("/").split("/")
        for _literal, pattern, ops in self._by_length.get(len(segments), []):
            if pattern.match(path):
                return ops.get(method.upper())
        return None

    def _validator(self, pointer: str) -> Draft202012Validator:
        cached = self._validators.get(pointer)
        if cached is None:
            ref = {"$ref": f"{SPEC_URI}#{pointer}"}
            cached = Draft202012Validator(ref, registry=self.registry)
            self._validators[pointer] = cached
        return cached

    def body_validator(self, operation: Operation) -> Draft202012Validator | None:
        """The (cached) validator of an operation's JSON body, ``None`` if it takes none."""
        if operation.body_pointer is None:
            return None
        return self._validator(operation.body_pointer)

    def check(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    ) -> JSON:
        """Validate one request; return Discord's ``errors`` tree, ``{}`` when it conforms.

        Parameters
        ----------
        method, path:
            The request's method and path below the API base (no query string).
        body:
            The decoded JSON body (for multipart: the decoded ``payload_json``), ``None`` when
            the request had no body.
        query:
            The query string's (name, value) pairs, or a mapping.

        Returns
        -------
        dict
            Field path → ``{"_errors": [...]}``. An operation the description does not list
            gives ``{"_errors": [{"code": "UNKNOWN_OPERATION", ...}]}``; answer it as
            ``50035`` like any other finding (the emulator does).
        """
        operation = self.match(method, path)
        if operation is None:
            return {
                "_errors": [
                    {
                        "code": "UNKNOWN_OPERATION",
                        "message": f"{method.upper()} {path} is not in Discord's API description",
                    }
                ]
            }
        tree: JSON = {}
        validator = self.body_validator(operation)
        if validator is not None and body is not None:
            tree.update(form_errors(validator.iter_errors(body)))
        pairs = list(query.items() if isinstance(query, Mapping) else query)
        tree.update(self._check_query(operation, pairs))
        return tree

    def _check_query(self, operation: Operation, pairs: list[tuple[str, str]]) -> JSON:
        tree: JSON = {}
        given = {name for name, _ in pairs}
        for name, param in operation.query.items():
            if param.required and name not in given:
                tree[name] = {
                    "_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}]
                }
        for name, value in pairs:
            found = operation.query.get(name)
            if found is None:
                continue  # Discord ignores query parameters it does not know
            validator = self._validator(found.pointer)
            tree.update(
                form_errors(validator.iter_errors(_coerce_query(value, found.schema)), (name,))
            )
        return tree


def _ancestors(start: Path) -> Iterator[Path]:
    yield start
    yield from start.parents


def find_spec_file(*starts: Path, name: str = SPEC_FILE_NAME) -> Path | None:
    """Find ``shared/specs/<name>`` (default ``discord-openapi.json``) beside a checkout or
    one of its parents (:mod:`sandbox.twilio_spec` looks for Twilio's file the same way).

    The project keeps the vendors' descriptions in a ``shared/`` folder next to the repository
    (``../shared/specs/`` from the repository root, as the README's sandbox command and CI
    have it). The search walks up from each start (default: this package's folder and the
    working directory).

    Returns
    -------
    Path or None
        The first file found, ``None`` when there is none.
    """
    roots = starts or (Path(__file__).resolve().parent, Path.cwd())
    for root in roots:
        for folder in _ancestors(root.resolve()):
            candidate = folder / "shared" / "specs" / name
            if candidate.is_file():
                return candidate
    return None


@functools.lru_cache(maxsize=4)
def _load_cached(path: str) -> DiscordSpec:
    return DiscordSpec.from_file(path)


def load_default_spec() -> DiscordSpec | None:
    """The description found by :func:`find_spec_file`, loaded once per process.

    Returns
    -------
    DiscordSpec or None
        ``None`` when no file is found (or it cannot be read); a warning says so, once.
    """
    path = find_spec_file()
    if path is None:
        _warn_once(
            "Discord's OpenAPI description (shared/specs/%s) was not found beside the "
            "checkout; request conformance checks are off",
            SPEC_FILE_NAME,
        )
        return None
    try:
        return _load_cached(str(path))
    except (OSError, ValueError) as exc:
        _warn_once(
            "Discord's OpenAPI description %s cannot be read (%s); request conformance "
            "checks are off",
            path,
            exc,
        )
        return None


_warned: set[str] = set()


def _warn_once(message: str, *args: object) -> None:
    text = message % args
    if text not in _warned:
        _warned.add(text)
        _log.warning(text)
