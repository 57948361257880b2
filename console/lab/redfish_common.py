"""What every lab Redfish resource module shares: the Base registry errors, replies and body helpers.

Split out of :mod:`console.lab.redfish_bmc` so the resource modules beside it
(:mod:`console.lab.redfish_inventory`, :mod:`console.lab.redfish_metadata`) can use them
without importing the server.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HEALTH", "RedfishError", "Reply", "collection", "iso", "json_body", "link", "status"]

HEALTH = {"ok": "OK", "unknown": "OK", "warning": "Warning", "critical": "Critical"}

# --------------------------------------------------------------------------- errors
_REGISTRY = "Base.1.16"
# MessageId -> (HTTP status, severity, message format, resolution); texts paraphrase the Base registry.
_MESSAGES: dict[str, tuple[int, str, str, str]] = {
    "ResourceMissingAtURI": (404, "Critical", "The resource at the URI '%1' was not found.",
                             "Place a valid resource at the URI or correct the URI and resubmit the request."),
    "OperationNotAllowed": (405, "Critical", "The HTTP method is not allowed on this resource.",
                            "None."),
    "NoValidSession": (401, "Critical", "There is no valid session established with the implementation.",
                       "Establish a session before attempting any operations."),
    "SessionLimitExceeded": (503, "Critical",
                             "The session establishment failed due to the number of simultaneous sessions "
                             "exceeding the limit of the implementation.",
                             "Reduce the number of other sessions before trying to establish the session."),
    "MalformedJSON": (400, "Critical", "The request body submitted was malformed JSON and could not be parsed.",
                      "Ensure that the request body is valid JSON and resubmit the request."),
    "InternalError": (500, "Critical",
                      "The request failed due to an internal service error.  The service is still operational.",
                      "Resubmit the request.  If the problem persists, consider resetting the service."),
    "ActionParameterMissing": (400, "Critical", "The action %1 requires the parameter %2 to be present.",
                               "Supply the action with the required parameter and resubmit the request."),
    "ActionParameterValueNotInList": (400, "Warning",
                                      "The value '%1' for the parameter %2 in the action %3 is not in the list "
                                      "of acceptable values.",
                                      "Choose a value from the enumeration list and resubmit the request."),
    "ActionParameterValueTypeError": (400, "Warning",
                                      "The value '%1' for the parameter %2 in the action %3 is of a different "
                                      "type than the parameter can accept.",
                                      "Correct the value and resubmit the request."),
    "PropertyValueNotInList": (400, "Warning",
                               "The value '%1' for the property %2 is not in the list of acceptable values.",
                               "Choose a value from the enumeration list and resubmit the request."),
    "PropertyValueTypeError": (400, "Warning",
                               "The value '%1' for the property %2 is of a different type than the property "
                               "can accept.",
                               "Correct the value and resubmit the request."),
    "PropertyUnknown": (400, "Warning", "The property %1 is not in the list of valid properties for the resource.",
                        "Remove the unknown property from the request body and resubmit the request."),
    "PropertyNotWritable": (400, "Warning", "The property %1 is a read-only property and cannot be assigned a value.",
                            "Remove the property from the request body and resubmit the request."),
    "QueryNotSupported": (501, "Warning", "Querying is not supported by the implementation.",
                          "Remove the query parameters and resubmit the request if the operation failed."),
    "HeaderInvalid": (412, "Critical", "The header '%1' is invalid.",
                      "Resubmit the request with a valid header value."),
    "ResourceAlreadyExists": (409, "Critical",
                              "The requested resource of type %1 with the property %2 with the value '%3' "
                              "already exists.",
                              "Do not repeat the create operation as the resource has already been created."),
    "InsufficientPrivilege": (403, "Critical",
                              "There are insufficient privileges for the account or credentials associated with "
                              "the current session to perform the requested operation.",
                              "Either abandon the operation or change the associated access rights and resubmit "
                              "the request if the operation failed."),
    "PropertyValueFormatError": (400, "Warning",
                                 "The value '%1' for the property %2 is of a different format than the property "
                                 "can accept.", "Correct the value for the property in the request body and "
                                 "resubmit the request if the operation failed."),
    "CreateFailedMissingReqProperties": (400, "Critical",
                                         "The create operation failed because the required property %1 was "
                                         "missing from the request.",
                                         "Correct the body to include the required property with a valid value "
                                         "and resubmit the request if the operation failed."),
    "CreateLimitReachedForResource": (400, "Critical",
                                      "The create operation failed because the resource has reached the limit of "
                                      "possible resources.",
                                      "Either delete resources and resubmit the request if the operation failed "
                                      "or do not resubmit the request."),
    "NoOperation": (400, "Warning", "The request body submitted contain no data to act upon and no changes to the "
                    "resource took place.", "Add properties in the JSON object and resubmit the request."),
    "PreconditionFailed": (412, "Critical", "The ETag supplied did not match the current ETag of the resource.",
                           "Try the operation again using the appropriate ETag."),
}


class RedfishError(Exception):
    """A request failed in a way Redfish describes with a Base registry message."""

    def __init__(self, message_id: str, *args: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(message_id)
        self.message_id = message_id
        self.args_ = [str(a) for a in args]
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return _MESSAGES[self.message_id][0]

    def body(self) -> dict[str, Any]:
        status, severity, fmt, resolution = _MESSAGES[self.message_id]
        text = fmt
        for i, arg in enumerate(self.args_, 1):
            text = text.replace(f"%{i}", arg)
        mid = f"{_REGISTRY}.{self.message_id}"
        return {"error": {"code": mid, "message": text, "@Message.ExtendedInfo": [{
            "@odata.type": "#Message.v1_1_1.Message", "MessageId": mid, "Message": text,
            "MessageArgs": self.args_, "MessageSeverity": severity, "Severity": severity, "Resolution": resolution,
        }]}}


@dataclass
class Reply:
    """A non-GET answer: status, optional JSON body, extra headers."""

    status: int = 204
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # a non-JSON body ($metadata's XML), sent as content_type
    content_type: str = "application/json"
    close: bool = False  # close the connection after answering (a BMC about to reboot)


# --------------------------------------------------------------------------- helpers
def link(uri: str) -> dict[str, str]:
    return {"@odata.id": uri}


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def collection(uri: str, type_name: str, name: str, members: list[str]) -> dict[str, Any]:
    return {
        "@odata.id": uri, "@odata.type": f"#{type_name}.{type_name}", "Name": name,
        "Members@odata.count": len(members), "Members": [link(m) for m in members],
    }


def status(health: str = "ok", state: str = "Enabled") -> dict[str, str]:
    return {"State": state, "Health": HEALTH.get(health, "OK")}


def json_body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RedfishError("MalformedJSON") from None
    if not isinstance(body, dict):
        raise RedfishError("MalformedJSON")
    return body
