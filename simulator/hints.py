"""What a property's name says its value is, and plausible values of that kind.

`hint_for("createdAt")` is a date-time, `hint_for("email")` an e-mail address,
`hint_for("name", parent="company")` a company name. Values are drawn from a `Seeded` stream;
person-like values in one object share that object's persona, so `firstName`, `lastName` and
`email` of one contact agree.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import lru_cache

from simulator import formats
from simulator import words as W
from simulator.canonical import Seeded


@dataclass(frozen=True, slots=True)
class Hint:
    kind: str = ""  # "" when the name says nothing
    noun: str = ""  # what the value belongs to, e.g. "contact" for contactId


NO_HINT = Hint()

_TOKENS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")

_EXACT: dict[str, str] = {}
for _kind, _names in {
    "email": "email emailaddress mail",
    "first_name": "firstname givenname forename",
    "last_name": "lastname surname familyname",
    "person": "fullname displayname author owner assignee contact recipient sender reporter "
    "manager customer person attendee organizer employee member creator",
    "username": "username login handle screenname nickname",
    "company": "company companyname organization organisation org employer business vendor "
    "supplier brand",
    "city": "city town",
    "country": "country countryname nation",
    "country_code": "countrycode",
    "region": "region province county",
    "street": "street streetaddress addressline addressline1 line1 address1",
    "address": "address fulladdress location",
    "zip": "zip zipcode postalcode postcode",
    "phone": "phone phonenumber mobile mobilephone tel telephone fax cell",
    "money": "price amount total cost subtotal tax balance fee salary revenue unitprice "
    "totalamount budget discount",
    "currency": "currency currencycode",
    "title": "title subject headline heading",
    "text": "description summary body content text message notes note comment comments bio "
    "details reason snippet excerpt answer response",
    "status": "status",
    "priority": "priority severity urgency",
    "category": "category type kind group segment",
    "job_title": "jobtitle role position occupation",
    "department": "department team division",
    "product": "product productname item itemname",
    "filename": "filename file attachment document",
    "path": "path filepath",
    "mime": "mimetype contenttype mediatype",
    "tag": "tag label keyword topic",
    "color": "color colour",
    "locale": "locale language lang",
    "timezone": "timezone tz",
    "hostname": "hostname host domain",
    "ip": "ip ipaddress",
    "slug": "slug",
    "version": "version",
    "sku": "sku",
    "token": "token cursor nextcursor pagetoken nexttoken nextpagetoken apikey secret",
    "hash": "hash sha checksum etag digest",
    "count": "count quantity qty size limit offset page pagesize stock inventory totalcount "
    "num number",
    "age": "age",
    "year": "year",
    "rating": "rating stars",
    "score": "score relevance confidence",
    "percent": "percent percentage progress",
    "latitude": "latitude lat",
    "longitude": "longitude lng lon long",
    "duration": "duration durationms durationseconds elapsed",
    "query": "query q search searchterm",
}.items():
    for _name in _names.split():
        _EXACT[_name] = _kind

# The last word of a longer name, e.g. billingEmail, homePhone, avatarUrl.
_LAST = {
    "email": "email",
    "phone": "phone",
    "mobile": "phone",
    "url": "url",
    "uri": "url",
    "link": "url",
    "href": "url",
    "website": "url",
    "homepage": "url",
    "endpoint": "url",
    "city": "city",
    "country": "country",
    "price": "money",
    "amount": "money",
    "total": "money",
    "cost": "money",
    "fee": "money",
    "balance": "money",
    "currency": "currency",
    "title": "title",
    "description": "text",
    "summary": "text",
    "notes": "text",
    "message": "text",
    "comment": "text",
    "status": "status",
    "count": "count",
    "quantity": "count",
    "date": "date",
    "time": "date_time",
    "timestamp": "date_time",
    "datetime": "date_time",
    "id": "id",
    "uuid": "uuid",
    "guid": "uuid",
    "code": "code",
    "number": "code",
    "zip": "zip",
    "color": "color",
    "version": "version",
    "tags": "tag",
    "type": "category",
    "category": "category",
    "level": "priority",
    "percent": "percent",
    "score": "score",
    "rating": "rating",
    "address": "address",
    "street": "street",
    "region": "region",
    "state": "status",
    "domain": "hostname",
    "host": "hostname",
    "hostname": "hostname",
    "ip": "ip",
    "path": "path",
    "token": "token",
    "cursor": "token",
    "hash": "hash",
    "year": "year",
    "age": "age",
    "size": "count",
    "seconds": "duration",
    "ms": "duration",
    "minutes": "duration",
    "hours": "duration",
    "duration": "duration",
    "language": "locale",
    "locale": "locale",
    "timezone": "timezone",
    "slug": "slug",
    "name": "name",
    "at": "date_time",
    "on": "date_time",
    "key": "token",
}
_PERSONISH = {
    "contact",
    "user",
    "customer",
    "member",
    "employee",
    "person",
    "author",
    "owner",
    "assignee",
    "attendee",
    "participant",
    "lead",
    "recipient",
    "sender",
    "people",
    "reporter",
    "manager",
    "agent",
    "patient",
    "student",
    "client",
    "guest",
    "friend",
    "account_holder",
    "requester",
    "creator",
    "candidate",
    "speaker",
    "host_user",
    "admin",
}
_COMPANYISH = {
    "company",
    "organization",
    "organisation",
    "org",
    "vendor",
    "supplier",
    "business",
    "employer",
    "brand",
    "merchant",
    "partner",
    "tenant",
    "account",
    "bank",
    "store",
    "shop",
}
_PRODUCTISH = {"product", "item", "sku", "variant", "listing", "article", "book", "lineitem"}
_PLACEISH = {
    "address",
    "location",
    "billing",
    "shipping",
    "place",
    "venue",
    "office",
    "geo",
    "headquarters",
    "residence",
    "origin",
    "destination",
}


def tokens(name: str) -> list[str]:
    return [t.lower() for t in _TOKENS.findall(name)]


def singular(word: str) -> str:
    lower = word.lower()
    if lower.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    for suffix in ("sses", "shes", "ches", "xes", "zes"):
        if lower.endswith(suffix):
            return word[:-2]
    if (
        lower.endswith("s")
        and not lower.endswith("ss")
        and len(word) > 2
        and lower
        not in {
            "status",
            "address",
            "news",
            "alias",
            "canvas",
            "bus",
            "series",
            "species",
            "analysis",
            "basis",
            "ms",
        }
    ):
        return word[:-1]
    return word


@lru_cache(maxsize=4096)
def hint_for(name: str | None, parent: str | None = None) -> Hint:
    """What a property called `name` (inside something called `parent`) holds."""
    if not name:
        return NO_HINT
    toks = tokens(name)
    if not toks:
        return NO_HINT
    joined = "".join(toks)
    parent_toks = tokens(parent) if parent else []
    parent_noun = singular(parent_toks[-1]) if parent_toks else ""
    noun = singular("_".join(toks[:-1])) if len(toks) > 1 else parent_noun
    last = toks[-1]

    if joined in {"createdat", "updatedat", "deletedat", "modifiedat"} or (
        last in {"at", "on"} and len(toks) > 1 and toks[-2].endswith("ed")
    ):
        return Hint("date_time", noun)
    if joined == "state" and parent_noun in _PLACEISH:
        return Hint("region", noun)
    if joined == "name" or (last == "name" and len(toks) > 1 and joined not in _EXACT):
        owner = singular(toks[-2]) if len(toks) > 1 else parent_noun
        if owner in {"first", "given"}:
            return Hint("first_name", noun)
        if owner in {"last", "family", "sur"}:
            return Hint("last_name", noun)
        if owner in _COMPANYISH:
            return Hint("company", owner)
        if owner in _PRODUCTISH:
            return Hint("product", owner)
        if owner in {"file", "attachment", "document"}:
            return Hint("filename", owner)
        if owner in {"city", "town"}:
            return Hint("city", owner)
        if owner == "country":
            return Hint("country", owner)
        if (
            not owner
            or owner in _PERSONISH
            or owner in {"full", "display", "contact", "real", "result", "record", "entry"}
        ):
            return Hint("person", owner)
        return Hint("named", owner)
    kind = _EXACT.get(joined)
    if kind is None and joined.endswith("id") and len(joined) > 2 and last == "id":
        kind = "id"
    if kind is None:
        kind = _LAST.get(last, "")
        if kind == "name":
            kind = "person"
        if kind == "url" and any(
            t in {"avatar", "image", "photo", "logo", "thumbnail", "icon", "picture"} for t in toks
        ):
            kind = "image_url"
        if kind == "date" and "time" in toks:
            kind = "date_time"
    if kind == "date_time" and joined in {"date", "day", "birthday", "birthdate", "dob"}:
        kind = "date"
    if kind == "person" and parent_noun in _COMPANYISH and joined in {"contact", "owner"}:
        kind = "person"
    return Hint(kind, noun)


def item_hint(name: str | None, parent: str | None = None) -> Hint:
    """The hint for one item of an array property (tags -> tag, emails -> email)."""
    if not name:
        return NO_HINT
    return hint_for(singular(name), parent)


# ---- values --------------------------------------------------------------------------------

_BASE36 = string.digits + string.ascii_lowercase


def persona(seeded: Seeded) -> tuple[str, str]:
    """The (first, last) name of the person `seeded` stands for: the same on every call."""
    rng = seeded.child("persona").rng
    return rng.choice(W.FIRST_NAMES), rng.choice(W.LAST_NAMES)


def _ascii_slug(text: str, sep: str = "-") -> str:
    return re.sub(r"[^a-z0-9]+", sep, text.lower()).strip(sep)


def email(seeded: Seeded, who: Seeded | None) -> str:
    first, last = persona(who or seeded)
    style = seeded.rng.randrange(3)
    local = (
        f"{first}.{last}"
        if style == 0
        else f"{first[0]}{last}"
        if style == 1
        else f"{first}{seeded.rng.randrange(1, 99)}"
    )
    return f"{local.lower()}@{seeded.rng.choice(W.DOMAINS)}"


def hostname(seeded: Seeded) -> str:
    rng = seeded.rng
    return f"{rng.choice(W.HOST_PREFIXES)}.{rng.choice(W.DOMAINS)}"


def random_id(seeded: Seeded, length: int = 10) -> str:
    rng = seeded.rng
    return "".join(rng.choice(_BASE36) for _ in range(length))


def url(seeded: Seeded, noun: str, image: bool = False) -> str:
    rng = seeded.rng
    host = f"{rng.choice(('www', 'app', 'api'))}.{rng.choice(W.DOMAINS)}"
    if image:
        return f"https://cdn.{rng.choice(W.DOMAINS)}/images/{random_id(seeded, 8)}.png"
    section = _ascii_slug(noun, "-") + "s" if noun else rng.choice(W.URL_SECTIONS)
    return f"https://{host}/{section}/{random_id(seeded, 8)}"


def sentence(seeded: Seeded) -> str:
    return seeded.rng.choice(W.SENTENCES)


def words(seeded: Seeded, count: int) -> str:
    rng = seeded.rng
    return " ".join(rng.choice(W.WORDS) for _ in range(count))


def string_value(hint: Hint, seeded: Seeded, who: Seeded | None = None) -> str:
    """A plausible string for `hint` (a generic phrase when the name says nothing)."""
    rng = seeded.rng
    kind = hint.kind
    if kind in {"person", "first_name", "last_name", "username", "email"}:
        first, last = persona(who or seeded)
        if kind == "person":
            return f"{first} {last}"
        if kind == "first_name":
            return first
        if kind == "last_name":
            return last
        if kind == "username":
            return f"{first[0]}{last}{rng.randrange(1, 99)}".lower()
        return email(seeded, who)
    if kind in {"city", "country", "country_code", "address"}:
        place = W.CITIES[(who or seeded).child("place").pick(len(W.CITIES))]
    match kind:
        case "company":
            return rng.choice(W.COMPANIES)
        case "city":
            return place[0]
        case "country":
            return place[1]
        case "country_code":
            return place[2]
        case "region":
            return rng.choice(W.REGIONS)
        case "street":
            return f"{rng.randrange(1, 999)} {rng.choice(W.STREETS)}"
        case "address":
            return f"{rng.randrange(1, 999)} {rng.choice(W.STREETS)}, {place[0]}"
        case "zip":
            return f"{rng.randrange(10000, 99999)}"
        case "phone":
            return f"+1 555-01{rng.randrange(100):02d}"
        case "date_time":
            return formats.gen_date_time(seeded)
        case "date":
            return formats.gen_date(seeded)
        case "uuid":
            return formats.gen_uuid(seeded)
        case "id":
            if not hint.noun:
                return formats.gen_uuid(seeded)
            prefix = _ascii_slug(hint.noun, "")[:4] or "id"
            return f"{prefix}_{random_id(seeded, 12)}"
        case "url":
            return url(seeded, hint.noun)
        case "image_url":
            return url(seeded, hint.noun, image=True)
        case "money":
            return f"{rng.randrange(100, 50000) / 100:.2f}"
        case "currency":
            return rng.choice(W.CURRENCIES)
        case "title":
            return rng.choice(W.TITLE_TOPICS)
        case "text":
            return sentence(seeded)
        case "status":
            return rng.choice(W.STATUSES)
        case "priority":
            return rng.choice(W.PRIORITIES)
        case "category":
            return rng.choice(W.CATEGORIES)
        case "job_title":
            return rng.choice(W.JOB_TITLES)
        case "department":
            return rng.choice(W.DEPARTMENTS)
        case "product":
            return f"{rng.choice(W.PRODUCT_ADJECTIVES)} {rng.choice(W.PRODUCT_NOUNS)}"
        case "named":
            return f"{rng.choice(W.WORDS).capitalize()} {rng.choice(W.WORDS).capitalize()}"
        case "filename":
            return (
                f"{rng.choice(W.FILE_STEMS)}-{rng.randrange(2023, 2027)}."
                f"{rng.choice(W.FILE_EXTENSIONS)}"
            )
        case "path":
            return f"/documents/{rng.choice(W.FILE_STEMS)}.{rng.choice(W.FILE_EXTENSIONS)}"
        case "mime":
            return rng.choice(W.MIME_TYPES)
        case "tag":
            return rng.choice(W.TAGS)
        case "color":
            return rng.choice(W.COLORS)
        case "locale":
            return rng.choice(W.LOCALES)
        case "timezone":
            return rng.choice(W.TIMEZONES)
        case "hostname":
            return hostname(seeded)
        case "ip":
            return formats.gen_ipv4(seeded)
        case "slug":
            return _ascii_slug(rng.choice(W.TITLE_TOPICS))
        case "version":
            return f"{rng.randrange(1, 5)}.{rng.randrange(0, 20)}.{rng.randrange(0, 10)}"
        case "sku":
            return f"SKU-{rng.randrange(10000, 99999)}"
        case "token":
            alphabet = string.ascii_letters + string.digits
            return "".join(rng.choice(alphabet) for _ in range(24))
        case "hash":
            return f"{rng.getrandbits(160):040x}"
        case "code":
            return f"{rng.choice(string.ascii_uppercase)}{rng.randrange(1000, 9999)}"
        case "query":
            return words(seeded, 2)
        case "count" | "age" | "year" | "rating" | "score" | "percent" | "duration":
            lo, hi, _ = number_range(kind, True) or (0, 100, 0)
            return str(rng.randint(int(lo), int(hi)))
        case "latitude" | "longitude":
            lo, hi, _ = number_range(kind, False) or (0, 1, 4)
            return f"{rng.uniform(lo, hi):.4f}"
    return words(seeded, rng.randrange(1, 3))


def string_candidates(hint: Hint, seeded: Seeded, who: Seeded | None = None) -> list[str]:
    """`string_value` first, then other spellings of the same thing (a country's ISO codes, a
    person's first name...) for schemas whose pattern or length rules out the first."""
    first = string_value(hint, seeded, who)
    match hint.kind:
        case "country" | "country_code":
            place = W.CITIES[(who or seeded).child("place").pick(len(W.CITIES))]
            return [first, place[2], place[3], place[1]]
        case "person":
            given, family = persona(who or seeded)
            return [first, given, family, f"{given[0]}. {family}"]
        case "money":
            return [first, first.split(".")[0]]
        case "locale":
            return [first, first[:2]]
        case "id":
            return [first, random_id(seeded, 12), f"{seeded.rng.randrange(1, 99999)}"]
    return [first]


def number_range(kind: str, integer: bool) -> tuple[float, float, int] | None:
    """A plausible (low, high, decimals) for a number of this kind, or None."""
    match kind:
        case "money":
            return (1, 500, 0) if integer else (1.0, 500.0, 2)
        case "count" | "rating" if integer:
            return (0, 50, 0) if kind == "count" else (1, 5, 0)
        case "rating":
            return (1.0, 5.0, 1)
        case "count":
            return (0, 50, 0)
        case "age":
            return (18, 90, 0)
        case "year":
            return (2000, 2026, 0)
        case "score":
            return (0, 100, 0) if integer else (0.0, 1.0, 3)
        case "percent":
            return (0, 100, 0) if integer else (0.0, 100.0, 1)
        case "latitude":
            return (-60.0, 70.0, 4)
        case "longitude":
            return (-170.0, 170.0, 4)
        case "duration":
            return (1, 3600, 0)
        case "date_time" | "date":
            # Epoch milliseconds of 2023..2026 (the settings API's own time unit).
            return (1672531200000, 1798761599000, 0)
        case "id":
            return (1, 99999, 0)
    return None
