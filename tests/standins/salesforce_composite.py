"""Composite and sObject Collections for the Salesforce stand-in: subrequests with
``@{referenceId.field}`` references, ``allOrNone`` rollback with the documented
PROCESSING_HALTED / ALL_OR_NONE_OPERATION_ROLLED_BACK results, and the request limits
(25 subrequests, 200 records). Each subrequest goes through the stand-in's own router.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from tests.standins.salesforce_http import (
    NO_BODY,
    Response,
    error_response,
    method_not_allowed,
)
from tests.standins.salesforce_records import ApiError, Org, WriteContext, normalize_id
from tests.standins.salesforce_schema import API_VERSIONS

MAX_COMPOSITE_SUBREQUESTS = 25
MAX_COLLECTION_RECORDS = 200
_ROLLED_BACK = (
    "The transaction was rolled back since another operation in the same transaction failed."
)
_COLLECTION_ROLLED_BACK = (
    "Record rolled back because not all records were valid and the request was using"
    " AllOrNone header"
)
_VERSION_PATH = re.compile(r"^/services/data/v(\d+\.\d)(?:/(.*))?$")
_REFERENCE = re.compile(r"@\{([A-Za-z0-9_]+)\.([^}]+)\}")

Results = dict[str, tuple[int, Any, dict[str, str]]]


class Route(Protocol):
    """The stand-in's router, as a subrequest needs it."""

    def __call__(
        self,
        method: str,
        version: str,
        rest: str,
        query: str,
        body: Any,
        headers: Mapping[str, str],
        *,
        in_composite: bool = False,
        force_all_or_none: bool = False,
    ) -> Response: ...


class Batches:
    """Runs composite requests and collections against ``org`` (the caller holds the lock)."""

    def __init__(self, org: Org, route: Route, on_subrequest: Callable[[str, str], None]):
        self.org = org
        self.route = route
        self.on_subrequest = on_subrequest

    def composite(self, body: Any, version: str) -> Response:
        """``POST composite``: run the subrequests in order, resolving references."""
        requests = body.get("compositeRequest") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return error_response(
                400,
                "JSON_PARSER_ERROR",
                "compositeRequest is required and must be a non-empty list",
            )
        if len(requests) > MAX_COMPOSITE_SUBREQUESTS:
            # The documented limit is 25 subrequests; the exact code of the rejection is not
            # certain (LIMIT_EXCEEDED is the stricter, generic reading).
            return error_response(
                400, "LIMIT_EXCEEDED", "Composite Request limit exceeded: 25 subrequests at most"
            )
        references: set[str] = set()
        for sub in requests:
            ref = sub.get("referenceId") if isinstance(sub, dict) else None
            if (
                not isinstance(sub, dict)
                or not isinstance(ref, str)
                or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", ref)
            ):
                return error_response(
                    400,
                    "JSON_PARSER_ERROR",
                    "Each subrequest needs method, url and a valid referenceId",
                )
            if ref in references:
                return error_response(
                    400, "DUPLICATE_VALUE", f"Duplicate referenceId provided in the request: {ref}"
                )
            references.add(ref)
        all_or_none = bool(body.get("allOrNone", False))
        snapshot = self.org.snapshot() if all_or_none else None
        results: Results = {}
        responses: list[dict[str, Any]] = []
        failed_at: int | None = None
        for index, sub in enumerate(requests):
            ref = sub["referenceId"]
            if failed_at is not None and all_or_none:
                responses.append(_halted(ref, _ROLLED_BACK))
                continue
            response = self._composite_subrequest(sub, results, version, all_or_none)
            results[ref] = (response.status, response.body, response.headers)
            responses.append(
                {
                    "body": response.body,
                    "httpHeaders": response.headers,
                    "httpStatusCode": response.status,
                    "referenceId": ref,
                }
            )
            if response.status >= 400 and failed_at is None:
                failed_at = index
        if all_or_none and failed_at is not None and snapshot is not None:
            self.org.restore(snapshot)
            responses = [
                r if i == failed_at else _halted(r["referenceId"], _ROLLED_BACK)
                for i, r in enumerate(responses)
            ]
        return Response(200, {"compositeResponse": responses})

    def _composite_subrequest(
        self,
        sub: dict[str, Any],
        results: Results,
        version: str,
        all_or_none: bool,
    ) -> Response:
        method = str(sub.get("method", "")).upper()
        try:
            url = _substitute(str(sub.get("url", "")), results)
            body = _substitute_json(sub["body"], results) if "body" in sub else NO_BODY
        except _ReferenceFailure as exc:
            return Response(400, [{"errorCode": "PROCESSING_HALTED", "message": str(exc)}])
        split = urlsplit(url)
        self.on_subrequest(method, split.path)
        match = _VERSION_PATH.match(split.path.rstrip("/"))
        if match is None or match.group(1) not in API_VERSIONS:
            return error_response(404, "NOT_FOUND", "The requested resource does not exist")
        raw_headers = sub.get("httpHeaders") or {}
        headers = (
            {str(k).lower(): str(v) for k, v in raw_headers.items()}
            if isinstance(raw_headers, dict)
            else {}
        )
        return self.route(
            method,
            match.group(1),
            match.group(2) or "",
            split.query,
            body,
            headers,
            in_composite=True,
            force_all_or_none=all_or_none,
        )

    # ----- sObject Collections

    def collections(
        self,
        method: str,
        params: dict[str, str],
        body: Any,
        ctx: WriteContext,
        force_all_or_none: bool,
    ) -> Response:
        """``composite/sobjects``: create (POST), update (PATCH) or delete (DELETE ?ids=)."""
        if method == "DELETE":
            ids = [i for i in params.get("ids", "").split(",") if i]
            all_or_none = force_all_or_none or params.get("allOrNone", "false").lower() == "true"
            return self._collection_apply(
                ids, all_or_none, lambda rid: self._delete_any(rid), keep_ids=True
            )
        if method not in {"POST", "PATCH"}:
            return method_not_allowed(method, "GET,POST,PATCH,DELETE")
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            return error_response(
                400, "JSON_PARSER_ERROR", "records is required and must be a list"
            )
        records: list[Any] = body["records"]
        if len(records) > MAX_COLLECTION_RECORDS:
            return error_response(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        for record in records:
            attributes = record.get("attributes") if isinstance(record, dict) else None
            if not isinstance(attributes, dict) or not attributes.get("type"):
                return error_response(400, "INVALID_TYPE", "Must send a concrete entity type.")
        all_or_none = force_all_or_none or bool(body.get("allOrNone", False))
        if method == "POST":
            return self._collection_apply(
                records, all_or_none, lambda r: self._create_one(r, ctx), keep_ids=False
            )
        return self._collection_apply(
            records, all_or_none, lambda r: self._update_one(r, ctx), keep_ids=True
        )

    def _create_one(self, record: dict[str, Any], ctx: WriteContext) -> str:
        fields = {k: v for k, v in record.items() if k != "attributes"}
        if any(k.lower() == "id" for k in fields):
            raise ApiError.of(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                "cannot specify Id in an insert call",
                ["Id"],
            )
        return self.org.create(record["attributes"]["type"], fields, ctx)

    def _update_one(self, record: dict[str, Any], ctx: WriteContext) -> str:
        fields = {k: v for k, v in record.items() if k != "attributes"}
        record_id = next((fields.pop(k) for k in list(fields) if k.lower() == "id"), None)
        if not isinstance(record_id, str):
            raise ApiError.of(400, "MISSING_ARGUMENT", "Id not specified in an update call", [])
        if normalize_id(record_id) is None:
            raise ApiError.of(400, "MALFORMED_ID", f"malformed id {record_id}", ["Id"])
        self.org.update(record["attributes"]["type"], record_id, fields, ctx)
        return str(normalize_id(record_id))

    def _delete_any(self, record_id: str) -> str:
        found = self.org.find(record_id)
        if found is None:
            raise ApiError.of(400, "ENTITY_IS_DELETED", "entity is deleted", [])
        self.org.delete(found[0], record_id)
        return str(found[1]["Id"])

    def _collection_apply(
        self, items: list[Any], all_or_none: bool, apply: Any, *, keep_ids: bool
    ) -> Response:
        snapshot = self.org.snapshot() if all_or_none else None
        results: list[dict[str, Any]] = []
        failed = False
        for item in items:
            try:
                record_id = apply(item)
                results.append({"id": record_id, "success": True, "errors": []})
            except ApiError as exc:
                failed = True
                result: dict[str, Any] = {
                    "success": False,
                    "errors": [_saveerror_response(e) for e in exc.errors],
                }
                if keep_ids:
                    result = {"id": _item_id(item), **result}
                results.append(result)
        if failed and snapshot is not None:
            self.org.restore(snapshot)
            rolled = {
                "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "message": _COLLECTION_ROLLED_BACK,
                "fields": [],
            }
            results = [
                r
                if not r["success"]
                else ({"id": r["id"]} if keep_ids else {}) | {"success": False, "errors": [rolled]}
                for r in results
            ]
        return Response(200, results)


def _halted(reference_id: str, message: str) -> dict[str, Any]:
    return {
        "body": [{"errorCode": "PROCESSING_HALTED", "message": message}],
        "httpHeaders": {},
        "httpStatusCode": 400,
        "referenceId": reference_id,
    }


def _saveerror_response(error: dict[str, Any]) -> dict[str, Any]:
    """A REST error entry as a SaveResult error (collections use ``statusCode``)."""
    out = {
        "statusCode": error["errorCode"],
        "message": error["message"],
        "fields": error.get("fields", []),
    }
    if "duplicateResult" in error:
        out["duplicateResult"] = error["duplicateResult"]
    return out


def _item_id(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        return next((str(v) for k, v in item.items() if k.lower() == "id"), None)
    return None


class _ReferenceFailure(Exception):
    pass


def _resolve_reference(ref: str, path: str, results: Results) -> Any:
    missing = _ReferenceFailure(
        f"Invalid reference specified. No value for {ref}.{path} found in {ref}. "
        f"Provided referenceId ids were {', '.join(results) or 'none'}."
    )
    if ref not in results or results[ref][0] >= 400:
        raise missing
    value: Any = results[ref][1]
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(value, list) or index >= len(value):
                raise missing
            value = value[index]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise missing
    if value is None or isinstance(value, dict | list):
        raise missing
    return value


def _substitute(text: str, results: Results) -> str:
    return _REFERENCE.sub(lambda m: str(_resolve_reference(m.group(1), m.group(2), results)), text)


def _substitute_json(value: Any, results: Results) -> Any:
    if isinstance(value, str):
        return _substitute(value, results)
    if isinstance(value, list):
        return [_substitute_json(v, results) for v in value]
    if isinstance(value, dict):
        return {k: _substitute_json(v, results) for k, v in value.items()}
    return value
