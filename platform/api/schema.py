"""OpenAPI post-processing: the error answers every operation can give, documented once.

drf-spectacular documents what the views declare; DRF itself also answers
- 400 with field errors (``{"field": ["message"], ...}``) when a request body or query
  parameter does not validate: documented beside the view's own error body;
- 401 without credentials, 403 for an account outside any organisation or a role that may
  not, 404 for an id that is not the requester's organisation's (or a page past the end),
  415 for a body in a media type the operation does not read: ``{"detail": "..."}``
  (a 404 also when an id in the body, e.g. ``dataset_version``, is not theirs).
Path ids are typed as the integers they are. Registered in
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]; schemathesis holds the answers to
it (tests/reliability/test_api_fuzz.py).
"""

from __future__ import annotations

DETAIL = "Detail"
FIELD_ERRORS = "FieldErrors"
METHODS = ("get", "post", "put", "patch", "delete")

COMPONENTS = {
    DETAIL: {
        "type": "object",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
        "description": "Why the request was refused, in words.",
    },
    FIELD_ERRORS: {
        "type": "object",
        "additionalProperties": {},
        "description": "Field name (or non_field_errors) -> what is wrong with it.",
    },
}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"content": {"application/json": {"schema": schema}}, "description": description}


def _add(responses: dict, code: str, schema: dict, description: str) -> None:
    if code not in responses:
        responses[code] = _json(schema, description)


def _reads_input(operation: dict) -> bool:
    return "requestBody" in operation or any(
        p.get("in") == "query" for p in operation.get("parameters", []))


def _integer_ids(operation: dict) -> None:
    """Object ids are integers. (The router lets any text up to the next slash reach a view,
    so a malformed id gets the API's JSON 404, which makes drf-spectacular call it a
    string.)"""
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "path" and parameter.get("name") == "id":
            parameter["schema"] = {"type": "integer"}
            parameter.setdefault("description", "The object's id.")


def document_error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {}).update(COMPONENTS)
    for path, item in result.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            _integer_ids(operation)
            responses = operation.setdefault("responses", {})
            if _reads_input(operation):
                given = responses.get("400", {}).get("content", {}).get(
                    "application/json", {}).get("schema")
                schema = {"anyOf": [given, _ref(FIELD_ERRORS)]} if given else _ref(
                    FIELD_ERRORS)
                responses["400"] = _json(schema, "The request does not validate: what is "
                                                 "wrong, by field or in words.")
            if "requestBody" in operation:
                _add(responses, "415", _ref(DETAIL), "A body in a media type the operation "
                                                     "does not read.")
            security = operation.get("security", [])
            if not (security and all(security)):  # public: anyone may call it
                continue
            _add(responses, "401", _ref(DETAIL), "No valid credentials.")
            _add(responses, "403", _ref(DETAIL), "The account may not do this.")
            if "{" in path or "requestBody" in operation or any(
                    p.get("name") == "page" for p in operation.get("parameters", [])):
                _add(responses, "404", _ref(DETAIL), "No such object in the requester's "
                                                     "organisation (an id in the path or the "
                                                     "body), or no such page.")
    return result
