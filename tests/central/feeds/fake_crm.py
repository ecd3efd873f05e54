"""An in-memory Salesforce org for the customer feed: the OAuth client-credentials token
on the org's My Domain, and REST `/query` and `/queryAll` running the SOQL the feed sends
over Contacts, written from the documented behaviour (`/query` leaves out deleted records,
`/queryAll` returns them with `IsDeleted` true: api_rest/resources_queryall.htm). Each
rule can be switched off (`without=`) so a test shows the feed's suite notices:

- `datetime-literal`: a dateTime field compared with a quoted value, or a value not in a
  documented dateTime format, is refused 400 INVALID_FIELD / MALFORMED_QUERY
  (developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/
  sforce_api_calls_soql_select_dateformats.htm: "not enclosed in single quotes").
- `unknown-field`: a field the object does not have is refused 400 INVALID_FIELD
  "No such column" (api_rest/errorcodes.htm).
- `no-order`: without ORDER BY, rows come in no particular order — here, newest first
  (soql_sosl/sforce_api_calls_soql_select_orderby.htm: "no guarantee of the order").
- `session`: a request without a valid bearer token is refused 401 INVALID_SESSION_ID
  (api_rest/errorcodes.htm).

SystemModstamp moves on every change and is kept to the second, as Salesforce keeps
dateTime values; answers write it `2026-12-05T18:00:00.000+0000`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx

CLIENT_ID = "3MVG9-crm-feed"
CLIENT_SECRET = "crm-secret-0123456789"
MY_DOMAIN = "https://acme.my.salesforce.test"
API = "/services/data/v62.0"
RULES = ("datetime-literal", "unknown-field", "no-order", "session")

FIELDS = {
    "Id",
    "SystemModstamp",
    "IsDeleted",
    "FirstName",
    "LastName",
    "Email",
    "Phone",
    "HasOptedOutOfEmail",
    "DoNotCall",
    "Loyalty_Id__c",
    "Loyalty_Tier__c",
    "Loyalty_Points__c",
    "Home_Store__c",
    "Share_With_Stores__c",
    "Preferred_Language__c",
}
_DATETIME_FIELDS = {"SystemModstamp"}
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")
_TOKEN = re.compile(r"\s*(\(|\)|,|<=|>=|<>|!=|=|<|>|'(?:[^'\\]|\\.)*'|[A-Za-z_][\w.]*|[\d:T+Z.-]+)")


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.response = httpx.Response(status, json=[{"message": message, "errorCode": code}])


class FakeCrm:
    def __init__(self, *, without: tuple[str, ...] = ()) -> None:
        unknown = set(without) - set(RULES)
        assert not unknown, unknown
        self.without = set(without)
        self.contacts: dict[str, dict[str, Any]] = {}
        self.clock = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        self.queries: list[str] = []
        self._tokens: set[str] = set()

    def enforces(self, rule: str) -> bool:
        return rule not in self.without

    # -- the org's data -------------------------------------------------------------------

    def tick(self, seconds: float = 1) -> datetime:
        self.clock += timedelta(seconds=seconds)
        return self.clock

    def save(self, ident: str, *, same_second: bool = False, **fields: Any) -> dict[str, Any]:
        """Create or change a contact; SystemModstamp moves to the org's clock."""
        assert set(fields) <= FIELDS, set(fields) - FIELDS
        row = self.contacts.setdefault(
            ident,
            {"Id": ident, "IsDeleted": False, "HasOptedOutOfEmail": False, "DoNotCall": False},
        )
        row.update(fields)
        row["SystemModstamp"] = stamp(self.clock if same_second else self.tick())
        return row

    def delete(self, ident: str) -> None:
        """Move a contact to the recycle bin: IsDeleted, SystemModstamp moves."""
        self.save(ident, IsDeleted=True)

    # -- HTTP -----------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/services/oauth2/token":
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
                return httpx.Response(400, json={"error": "invalid_client"})
            token = f"00D!crm-{len(self._tokens) + 1}"
            self._tokens.add(token)
            return httpx.Response(
                200,
                json={"access_token": token, "instance_url": MY_DOMAIN, "scope": "api"},
            )
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.enforces("session") and bearer not in self._tokens:
            return Refused(401, "INVALID_SESSION_ID", "Session expired or invalid").response
        assert request.url.path in (f"{API}/query", f"{API}/queryAll"), request.url.path
        query = request.url.params["q"]
        self.queries.append(query)
        try:
            records = self.run(query, deleted=request.url.path.endswith("/queryAll"))
        except Refused as exc:
            return exc.response
        return httpx.Response(
            200, json={"totalSize": len(records), "done": True, "records": records}
        )

    # -- SOQL, as much as the feed's queries use ------------------------------------------

    def run(self, query: str, *, deleted: bool = False) -> list[dict[str, Any]]:
        m = re.fullmatch(
            r"SELECT (?P<fields>.+?) FROM (?P<obj>\w+)(?: WHERE (?P<where>.+?))?"
            r"(?: ORDER BY (?P<order>.+?))?(?: LIMIT (?P<limit>\d+))?",
            query.strip(),
        )
        if not m or m["obj"] != "Contact":
            raise Refused(400, "MALFORMED_QUERY", f"unexpected query: {query[:80]}")
        fields = [f.strip() for f in m["fields"].split(",")]
        for field in fields:
            self._known(field)
        rows = [r for r in self.contacts.values() if deleted or not r["IsDeleted"]]
        if m["where"]:
            tokens = _TOKEN.findall(m["where"])
            predicate, rest = self._or(tokens)
            if rest:
                raise Refused(400, "MALFORMED_QUERY", f"unexpected token: {rest[0]}")
            rows = [r for r in rows if predicate(r)]
        if m["order"]:
            for part in reversed([p.split() for p in m["order"].split(",")]):
                self._known(part[0])
                rows.sort(key=lambda r: str(r.get(part[0]) or ""), reverse=part[-1] == "DESC")
        elif self.enforces("no-order"):
            rows.sort(key=lambda r: str(r["SystemModstamp"]), reverse=True)
        if m["limit"]:
            rows = rows[: int(m["limit"])]
        return [
            {"attributes": {"type": "Contact"}, **{f: row.get(f) for f in fields}} for row in rows
        ]

    def _known(self, field: str) -> None:
        if field not in FIELDS and self.enforces("unknown-field"):
            raise Refused(400, "INVALID_FIELD", f"No such column '{field}' on entity 'Contact'")

    def _or(self, tokens: list[str]) -> tuple[Any, list[str]]:
        left, tokens = self._and(tokens)
        while tokens and tokens[0].upper() == "OR":
            right, tokens = self._and(tokens[1:])
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left, tokens

    def _and(self, tokens: list[str]) -> tuple[Any, list[str]]:
        left, tokens = self._term(tokens)
        while tokens and tokens[0].upper() == "AND":
            right, tokens = self._term(tokens[1:])
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left, tokens

    def _term(self, tokens: list[str]) -> tuple[Any, list[str]]:
        if tokens[0] == "(":
            inner, rest = self._or(tokens[1:])
            if not rest or rest[0] != ")":
                raise Refused(400, "MALFORMED_QUERY", "unbalanced parentheses")
            return inner, rest[1:]
        field, op, literal = tokens[0], tokens[1], tokens[2]
        self._known(field)
        value = self._literal(field, literal)

        def test(row: dict[str, Any]) -> bool:
            have = row.get(field)
            if field in _DATETIME_FIELDS and have is not None:
                have = _instant(str(have))
            if have is None or value is None:
                return bool(op == "=" and have is value)
            return {
                "=": have == value,
                "!=": have != value,
                "<>": have != value,
                "<": have < value,
                ">": have > value,
                "<=": have <= value,
                ">=": have >= value,
            }[op]

        return test, tokens[3:]

    def _literal(self, field: str, text: str) -> Any:
        if field in _DATETIME_FIELDS:
            if text.startswith("'") and self.enforces("datetime-literal"):
                raise Refused(
                    400,
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{field}' must be of type dateTime "
                    "and should not be enclosed in quotes",
                )
            if not _DATETIME.match(text.strip("'")) and self.enforces("datetime-literal"):
                raise Refused(400, "MALFORMED_QUERY", f"invalid dateTime: {text}")
            return _instant(text.strip("'"))
        if text.startswith("'"):
            return text[1:-1].replace("\\'", "'").replace("\\\\", "\\")
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        if text.lower() == "null":
            return None
        return float(text)


def _instant(text: str) -> datetime:
    text = text.replace("Z", "+00:00")
    if text[-5] in "+-" and text[-3] != ":":
        text = f"{text[:-2]}:{text[-2:]}"
    return datetime.fromisoformat(text).replace(microsecond=0)
