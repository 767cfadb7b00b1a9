"""Check the bridge's requests to Twilio against Twilio's published OpenAPI description.

:class:`TwilioSpec` loads ``twilio_api_v2010.json`` (OpenAPI 3.0.1, the ``twilio/twilio-oai``
repository; ``shared/specs/twilio-api-v2010.json`` beside the checkout), matches a request to its
operation by method and path template (``POST /2010-04-01/Accounts/{AccountSid}/Calls.json``)
and validates, with ``jsonschema`` (Draft 4, the dialect OpenAPI 3.0 schemas are based on;
``$ref`` resolved through a ``referencing`` registry of the document):

* the path parameters (``AccountSid``: ``^AC[0-9a-fA-F]{32}$``);
* the form body (``application/x-www-form-urlencoded``): each field coerced to its schema's
  type first — a repeated field (``StatusCallbackEvent``) to an array, ``integer``/``number``/
  ``boolean`` from their text — then the whole form against the request schema (required
  ``To``/``From`` …, enums such as ``StatusCallbackMethod``);
* that every field is one the operation documents (Twilio ignores unknown ones silently, so a
  misspelt parameter would never work in production: it is a violation here).

The same approach as :mod:`sandbox.discord_spec` (whose file finder it reuses); the emulator
(:mod:`sandbox.twilio_emulator`) records each violation in ``spec_violations``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from sandbox.discord_spec import find_spec_file

__all__ = ["SPEC_FILE_NAME", "TwilioSpec", "form_pairs", "load_twilio_spec"]

_log = logging.getLogger(__name__)

JSON = dict[str, Any]

#: File name of Twilio's description in ``shared/specs/``.
SPEC_FILE_NAME = "twilio-api-v2010.json"
SPEC_URI = "urn:twilio:api:v2010:openapi"
_FORM = "application/x-www-form-urlencoded"


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


@dataclass(frozen=True)
class _Operation:
    template: str
    pattern: re.Pattern[str]
    path_params: dict[str, str]  # name -> JSON pointer of its schema
    form_pointer: str | None
    properties: JSON


class TwilioSpec:
    """Twilio's API description, ready to check requests (:meth:`check`).

    Parameters
    ----------
    document:
        The parsed OpenAPI 3.0 document.
    source:
        Where it came from, for messages.
    """

    def __init__(self, document: JSON, *, source: str = "<document>") -> None:
        self.document = document
        self.source = source
        resource: Resource[Any] = Resource.from_contents(document, default_specification=DRAFT4)
        self.registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
        self._validators: dict[str, Draft4Validator] = {}
        self._operations: dict[str, list[_Operation]] = {}
        for template, item in document.get("paths", {}).items():
            for method, raw in item.items():
                if method in ("parameters", "servers", "description", "x-twilio"):
                    continue
                if isinstance(raw, dict):
                    self._operations.setdefault(method.upper(), []).append(
                        self._operation(method, template, raw)
                    )

    @classmethod
    def from_file(cls, path: str | Path) -> TwilioSpec:
        """Load the description from a JSON file (``OSError``/``ValueError`` when it cannot)."""
        return cls(json.loads(Path(path).read_text(encoding="utf-8")), source=str(path))

    def _operation(self, method: str, template: str, raw: JSON) -> _Operation:
        base = f"/paths/{_escape(template)}/{method}"
        params = {
            p["name"]: f"{base}/parameters/{i}/schema"
            for i, p in enumerate(raw.get("parameters", []))
            if p.get("in") == "path"
        }
        regex = re.escape(template)
        for name in params:
            regex = regex.replace(re.escape("{" + name + "}"), f"(?P<{name}>[^/]+)")
        form = raw.get("requestBody", {}).get("content", {}).get(_FORM)
        pointer = f"{base}/requestBody/content/{_escape(_FORM)}/schema" if form else None
        properties = (form or {}).get("schema", {}).get("properties", {})
        return _Operation(template, re.compile(regex), params, pointer, properties)

    def _validator(self, pointer: str) -> Draft4Validator:
        cached = self._validators.get(pointer)
        if cached is None:
            cached = Draft4Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=self.registry)
            self._validators[pointer] = cached
        return cached

    def _resolve(self, schema: JSON) -> JSON:
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            node: Any = self.document
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            return dict(node)
        return schema

    def _coerce(self, name: str, values: Sequence[str], schema: JSON) -> Any:
        schema = self._resolve(schema)
        kind = schema.get("type")
        if kind == "array":
            item = self._resolve(schema.get("items", {}))
            return [self._coerce_one(v, item) for v in values]
        return self._coerce_one(values[-1], schema)

    @staticmethod
    def _coerce_one(value: str, schema: JSON) -> Any:
        kind = schema.get("type")
        try:
            if kind == "integer":
                return int(value)
            if kind == "number":
                return float(value)
        except ValueError:
            return value  # the validator reports the wrong type
        if kind == "boolean" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return value

    def check(self, method: str, path: str, form: Sequence[tuple[str, str]]) -> list[str]:
        """Violations of one request (empty when it conforms).

        Parameters
        ----------
        method:
            HTTP method.
        path:
            Request path, e.g. ``/2010-04-01/Accounts/AC…/Calls.json``.
        form:
            The form fields in order, repeated keys kept (``[("To", "+1555…"), …]``).

        Returns
        -------
        list of str
            ``"POST /…/Calls.json: StatusCallbackMethod: 'PUT' is not one of ['GET',
            'POST']"`` …; a request the description does not know is one violation.
        """
        operation = next(
            (op for op in self._operations.get(method.upper(), []) if op.pattern.fullmatch(path)),
            None,
        )
        where = f"{method.upper()} {path}"
        if operation is None:
            return [f"{where}: not an operation of Twilio's API description"]
        problems: list[str] = []
        match = operation.pattern.fullmatch(path)
        assert match is not None
        for name, pointer in operation.path_params.items():
            for error in self._validator(pointer).iter_errors(match[name]):
                problems.append(f"{where}: path {name}: {error.message}")
        grouped: dict[str, list[str]] = {}
        for key, value in form:
            grouped.setdefault(key, []).append(value)
        unknown = sorted(k for k in grouped if k not in operation.properties)
        problems.extend(f"{where}: {k}: not a documented parameter" for k in unknown)
        if operation.form_pointer is not None:
            body = {
                k: self._coerce(k, v, operation.properties[k])
                for k, v in grouped.items()
                if k in operation.properties
            }
            for error in self._validator(operation.form_pointer).iter_errors(body):
                field = "/".join(str(p) for p in error.absolute_path) or "(form)"
                problems.append(f"{where}: {field}: {error.message}")
        return problems


@functools.lru_cache(maxsize=2)
def _load_cached(path: str) -> TwilioSpec:
    return TwilioSpec.from_file(path)


def load_twilio_spec(path: str | Path | None = None) -> TwilioSpec | None:
    """The description at ``path`` or found beside the checkout (loaded once per process);
    ``None`` (with a warning) when there is none or it cannot be read."""
    found = Path(path) if path is not None else find_spec_file(name=SPEC_FILE_NAME)
    if found is None:
        _log.warning("Twilio's API description (shared/specs/%s) was not found", SPEC_FILE_NAME)
        return None
    try:
        return _load_cached(str(found))
    except (OSError, ValueError) as exc:
        _log.warning("Twilio's API description %s cannot be read: %s", found, exc)
        return None


def form_pairs(form: Mapping[str, str | Sequence[str]]) -> list[tuple[str, str]]:
    """``{"A": "1", "B": ["x", "y"]}`` → ``[("A", "1"), ("B", "x"), ("B", "y")]``."""
    pairs: list[tuple[str, str]] = []
    for key, value in form.items():
        if isinstance(value, str):
            pairs.append((key, value))
        else:
            pairs.extend((key, v) for v in value)
    return pairs
