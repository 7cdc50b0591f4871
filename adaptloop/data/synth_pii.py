"""PII detection data with no file and no endpoint: Faker fills sentence templates.

The approach of presidio-research's data generator: a template is a sentence with Faker field
placeholders (``{first_name}``, ``{street_name}``, ``{iban}``…); each placeholder becomes one
labelled span, so the labels are right by construction. Entity names follow Microsoft Presidio's
catalogue (``PERSON``, ``PHONE_NUMBER``, ``US_SSN``…), so a model trained here speaks the same
vocabulary as the PII tools a team already runs. An address is tagged component by component
(number, street, unit, city, postcode), as Faker's fields are.

Templates are split into two disjoint pools: the frozen eval set is drawn from one, training
data from the other, so the eval set measures sentences whose wording the model never saw.
Training data adds hard negatives (numbers, codes and capitalised words that are not PII) and
boundary cases (lower-cased chat, an entity at the very start or end, in quotes or brackets).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: entity type → what it covers (shown in the task spec for confirmation).
DEFINITIONS: dict[str, str] = {
    "PERSON": "a person's name: first, last or full",
    "TITLE": "an honorific (Mr, Dr) or a job title attached to a person",
    "EMAIL_ADDRESS": "an email address",
    "PHONE_NUMBER": "a phone or fax number in any national format",
    "STREET_ADDRESS": "a building number, street name or unit (each part its own span)",
    "GPE": "a city, state or country in an address or a person's whereabouts",
    "ZIP_CODE": "a postal code",
    "DATE_TIME": "a date, time or date of birth tied to a person",
    "AGE": "a person's age",
    "NRP": "a nationality, religion or political group",
    "ORGANIZATION": "a company or organisation name",
    "CREDIT_CARD": "a payment card number",
    "IBAN_CODE": "an international bank account number",
    "US_SSN": "a US social security number",
    "US_DRIVER_LICENSE": "a US driver's licence number",
    "IP_ADDRESS": "an IPv4 or IPv6 address",
    "DOMAIN_NAME": "an internet domain name",
}

EDGE_CASES = (
    "order numbers, amounts, quantities and product codes are not PII",
    "an address is tagged part by part: number, street, unit, city, postcode",
    "lower-case chat, entities at the start or end of a message, in quotes or brackets",
)

LOCALES = ("en_US", "en_US", "en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "fi_FI",
           "sv_SE", "da_DK", "pt_BR", "pl_PL", "de_CH", "en_CA", "en_AU", "cs_CZ")

_NRP = ("American", "British", "German", "French", "Spanish", "Italian", "Dutch", "Finnish", "Swedish",
        "Polish", "Brazilian", "Mexican", "Indian", "Chinese", "Japanese", "Korean", "Nigerian", "Kenyan",
        "Turkish", "Greek", "Irish", "Canadian", "Australian", "Catholic", "Protestant", "Muslim", "Jewish",
        "Hindu", "Buddhist", "Sikh", "atheist", "Democrat", "Republican", "Labour", "Conservative",
        "Social Democrat", "Green Party")
_PRODUCTS = ("router", "blender", "desk lamp", "running shoes", "laptop stand", "coffee grinder",
             "headphones", "yoga mat", "backpack", "monitor", "kettle", "phone case", "printer ink")


def _first(fake: Any, *providers: str) -> Callable[[], str]:
    """The first of ``providers`` that the locale has."""
    for p in providers:
        try:
            getattr(fake, p)()
            return getattr(fake, p)
        except AttributeError:
            continue
    raise AttributeError(providers[-1])


def _fields(fake: Any, rng: random.Random) -> dict[str, Callable[[], str]]:
    """Placeholder → a value generator for one locale (absent providers fall back to en_US)."""
    def dl() -> str:
        return fake.bothify(rng.choice(("?#######", "?###-####-####", "#########", "??######", "?##-###-###")),
                            letters="ABCDEFGHJKLMNPRSTWXYZ")

    def date() -> str:
        day = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randint(0, 28000))  # fixed range: same seed, same data
        return day.strftime(
            rng.choice(("%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%B %d, %Y", "%d %B %Y", "%d.%m.%Y", "%b %d")))

    return {
        "name": fake.name, "first_name": fake.first_name, "last_name": fake.last_name,
        "prefix": lambda: rng.choice(("Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "Mr", "Ms", "Dr")),
        "job": fake.job, "email": fake.email, "phone_number": fake.phone_number,
        "building_number": fake.building_number, "street_name": fake.street_name,
        "secondary_address": lambda: fake.bothify(rng.choice(("Apt. ###", "Suite ###", "Flat #", "Unit ##"))),
        "city": fake.city, "country": fake.country, "state": _first(fake, "state", "administrative_unit", "city"),
        "postcode": fake.postcode, "date": date, "date_of_birth": lambda: date(),
        "time": lambda: dt.time(rng.randint(0, 23), rng.choice((0, 15, 30, 45, rng.randint(0, 59))),
                                rng.randint(0, 59)).strftime(rng.choice(("%H:%M", "%I:%M %p", "%H:%M:%S"))),
        "day_of_week": fake.day_of_week, "age": lambda: str(rng.randint(16, 94)),
        "nrp": lambda: rng.choice(_NRP), "company": fake.company,
        "credit_card_number": fake.credit_card_number, "iban": fake.iban, "ssn": fake.ssn,
        "driver_license": dl, "ipv4": fake.ipv4, "ipv6": fake.ipv6, "domain_name": fake.domain_name,
        # not PII: the hard negatives inside otherwise PII-bearing sentences
        "order_id": lambda: fake.bothify(rng.choice(("#######", "ORD-#####", "??-####-##"))),
        "amount": lambda: rng.choice(("$", "€", "£", "")) + f"{rng.randint(1, 2500)}.{rng.randint(0, 99):02d}",
        "count": lambda: str(rng.randint(2, 40)), "product": lambda: rng.choice(_PRODUCTS),
    }


#: placeholder → entity type; placeholders not listed here fill text that is not PII.
FIELD_TYPES = {
    "name": "PERSON", "first_name": "PERSON", "last_name": "PERSON", "prefix": "TITLE", "job": "TITLE",
    "email": "EMAIL_ADDRESS", "phone_number": "PHONE_NUMBER", "building_number": "STREET_ADDRESS",
    "street_name": "STREET_ADDRESS", "secondary_address": "STREET_ADDRESS", "city": "GPE", "country": "GPE",
    "state": "GPE", "postcode": "ZIP_CODE", "date": "DATE_TIME", "date_of_birth": "DATE_TIME",
    "time": "DATE_TIME", "day_of_week": "DATE_TIME", "age": "AGE", "nrp": "NRP", "company": "ORGANIZATION",
    "credit_card_number": "CREDIT_CARD", "iban": "IBAN_CODE", "ssn": "US_SSN",
    "driver_license": "US_DRIVER_LICENSE", "ipv4": "IP_ADDRESS", "ipv6": "IP_ADDRESS",
    "domain_name": "DOMAIN_NAME",
}

TEMPLATES = (
    "Hi, my name is {first_name} {last_name} and I need help with my account.",
    "Please send the invoice to {email} before {day_of_week}.",
    "You can reach me at {phone_number} after {time}.",
    "Shipping address:\n{building_number} {street_name} {secondary_address}\n{city}, {state} {postcode}",
    "{prefix} {last_name} will see you on {date} at {time}.",
    "My card number is {credit_card_number}, expiring next year.",
    "Transfer the deposit to IBAN {iban} by {date}.",
    "SSN: {ssn}",
    "Driver's license no. {driver_license}, issued in {state}.",
    "We saw repeated logins from {ipv4} on {date}.",
    "The site {domain_name} is registered to {company}.",
    "{name} ({age}) moved from {city} to {country} last spring.",
    "As a {nrp} citizen, {first_name} needs a visa for the trip.",
    "Contact person: {name}, {job} at {company}, phone {phone_number}",
    "I live at {building_number} {street_name}, {postcode} {city}.",
    "Date of birth: {date_of_birth}; place of birth: {city}, {country}",
    "Could you update my email from {email} to {email}?",
    "{first_name} said the package never arrived at {building_number} {street_name}.",
    "The patient, {name}, aged {age}, was admitted on {date}.",
    "Forwarding this to {first_name} ({email}) so she can follow up.",
    "Ticket from {name}: the router at {ipv4} keeps dropping the connection.",
    "Billing name: {name}\nCard: {credit_card_number}\nZip: {postcode}",
    "{company} hired {name} as {job} in {city}.",
    "Call {prefix} {name} on {phone_number} or write to {email}.",
    "Our {nrp} colleague {first_name} {last_name} joins the {city} office on {date}.",
    "Member since {date}. Account holder: {name}, {building_number} {street_name}, {city}",
    "The server {ipv6} answered requests for {domain_name} until {time}.",
    "Refund the order to card {credit_card_number}, it belongs to {first_name}.",
    "Emergency contact: {name} - {phone_number}",
    "I'm {age} years old and I've lived in {city} all my life.",
    "Send the contract to {prefix} {last_name}, {company}, {building_number} {street_name}, {postcode} {city}, "
    "{country}.",
    "Her social security number {ssn} was on the form.",
    "Hey it's {first_name}, can you call me back at {phone_number}?",
    "Name: {name}\nEmail: {email}\nPhone: {phone_number}",
    "From: {name} <{email}>\nSubject: meeting on {day_of_week}",
    "The {job} {name} signed on behalf of {company}.",
    "Wire {amount} to {iban} (account of {name}).",
    "{name} was born on {date_of_birth} in {city}.",
    "Please verify license {driver_license} for {first_name} {last_name}.",
    "Visitor log: {name}, {company}, arrived {time} on {date}.",
    "New address for {first_name}: {building_number} {street_name} {secondary_address}, {city} {postcode}.",
    "I think {first_name} from {company} already emailed {email} about it.",
    "Access from {ipv4} was blocked; the user {first_name}.{last_name} was notified.",
    "The {nrp} delegation led by {prefix} {last_name} lands in {city} on {date}.",
    "My {age}-year-old son {first_name} needs a new passport.",
    "Our office moved to {building_number} {street_name}, {city}, {state}.",
    "Text {phone_number} if the delivery to {city} is late.",
    "{last_name}, {first_name} - DOB {date_of_birth} - SSN {ssn}",
    "Please whitelist {domain_name} and {ipv4} for {company}.",
    "Dear {prefix} {last_name}, your appointment is confirmed for {date} at {time}.",
    "Booking for {name}, {count} guests, check-in {date}. Contact: {email}",
    "Passenger {last_name}/{first_name} {prefix} - seat {count}A - departs {time}",
    "Employee record: {name}, {job}, hired {date}, reports to {first_name} {last_name}",
    "Patient {first_name} {last_name} (DOB {date_of_birth}) called from {phone_number} about the results.",
    "{first_name} {last_name}\n{building_number} {street_name}\n{city} {postcode}\n{country}",
    "Please ship to {name}, {secondary_address}, {building_number} {street_name}, {city}.",
    "Your verification code was sent to {phone_number}. Didn't get it? Email {email}.",
    "Login alert: new sign-in to {first_name}'s account from {ipv4} ({city}, {country}).",
    "Card ending {credit_card_number} was declined at {company} on {date}.",
    "Account holder {name}, IBAN {iban}, BIC on file, opened {date}.",
    "I, {name}, authorise {company} to debit my account.",
    "Reach our {city} branch at {phone_number}, or visit {building_number} {street_name}.",
    "{prefix} {first_name} {last_name} is a {age} year old {nrp} national living in {city}.",
    "the invoice for {company} went to {email} on {day_of_week}",
    "Tenant: {name}; unit {secondary_address}; lease from {date} to {date}",
    "Support chat - {first_name}: my order to {postcode} never came, my number is {phone_number}",
    "Applicant {name}, SSN {ssn}, license {driver_license}, {building_number} {street_name}, {state}",
    "Mail the forms to {company}, attn. {name}, {building_number} {street_name}, {city}, {state} {postcode}.",
    "Server logs show {domain_name} resolving to {ipv4} since {date}.",
    "{name} <{email}> wrote on {date}: see you at {time}!",
    "Can you add {first_name} ({phone_number}) to the {company} account?",
    "Reference letter for {name} from {prefix} {last_name}, {job}, {company}",
    "Born {date_of_birth} in {city}; citizenship: {nrp}",
    "Hi {first_name}, your parcel will arrive at {building_number} {street_name} on {day_of_week}.",
    "{company} | {building_number} {street_name} | {city}, {country} | {phone_number}",
    "To: {email}\nCc: {email}\nRe: contract for {name}",
    "Whois: {domain_name} registered by {name}, {company}, {country}",
    "Hotel guest {last_name} in room {count} asked for a taxi at {time}.",
    "We refunded {amount} to card {credit_card_number} held by {name}.",
    "{first_name} is {age} and works as a {job} in {city}.",
)

NEGATIVES = (
    "Order {order_id} shipped with {count} items, total {amount}.",
    "The {product} stopped working after {count} days.",
    "Can I return the {product} if the box is opened?",
    "What is your refund policy for orders over {amount}?",
    "The meeting notes are attached, see section {count}.",
    "Please restart the app and try again.",
    "I was charged {amount} twice for order {order_id}.",
    "How many {product}s can I buy at once? I need {count}.",
    "Thanks, that solved it!",
    "The new version is much faster than the old one.",
    "Is the {product} available in blue?",
    "Reference {order_id} is still pending.",
    "We need {count} more chairs for the conference room.",
    "Monday Motivation: Keep Going, Stay Kind.",
    "Your subscription renews automatically every month.",
    "Press 1 for billing, 2 for support.",
    "Error code {count} appears when I open Settings.",
    "The Quick Start Guide is on page {count}.",
    "Version {count}.{count}.{count} fixes the login bug.",
    "Battery is at {count}% after the update.",
    "Flight {order_id} is delayed by {count} minutes.",
    "Room {count} on floor {count} has no projector.",
    "Invoice total: {amount} (tax {amount}). Reference {order_id}.",
    "Set the timer to {count} minutes and stir twice.",
    "The Premium Plan includes {count} seats and Priority Support.",
    "Ticket {order_id}: printer on level {count} is jammed again.",
    "Please reset the router, then wait {count} seconds.",
    "Your cart has {count} items; shipping is free over {amount}.",
    "Model X-{count} and Model Y-{count} share the same charger.",
    "SKU {order_id} is back in stock at {amount} each.",
)

_WRAP = (("", ""), ("", ""), ("", ""), ("Hello, ", ""), ("", " Thanks!"), ("Hi team, ", " Best regards."),
         ("\"", "\""), ("(", ")"), ("Update: ", ""), ("", " Please advise."), ("fyi ", ""))


@dataclass(frozen=True)
class Synthetic:
    """One generated record with its provenance."""

    text: str
    spans: tuple[tuple[int, int, str], ...]
    template: str

    def to_record(self, *, part: str, prompt_hash: str, locale: str) -> dict[str, Any]:
        return {"text": self.text, "spans": [{"start": s, "end": e, "label": t} for s, e, t in self.spans],
                "group": self.template, "provenance": {"teacher": f"faker-templates ({locale})", "part": part,
                                                        "template": self.template, "prompt_hash": prompt_hash}}


def template_id(template: str) -> str:
    return hashlib.sha1(template.encode()).hexdigest()[:10]


def _types(template: str) -> set[str]:
    return {FIELD_TYPES[f] for f in re.findall(r"{(\w+)}", template) if f in FIELD_TYPES}


def pools(eval_share: float = 0.25) -> tuple[list[str], list[str]]:
    """The templates (PII-bearing and negative) split once into (eval, train) pools, by template hash;
    an entity type that only the eval pool's templates carry gets one of them moved to training."""
    ev, tr = [], []
    for t in TEMPLATES + NEGATIVES:
        (ev if int(template_id(t), 16) % 1000 < eval_share * 1000 else tr).append(t)
    for t in sorted(ev, key=template_id):
        if _types(t) - set().union(*map(_types, tr)):
            ev.remove(t)
            tr.append(t)
    return ev, tr


def render(template: str, fields: dict[str, Callable[[], str]], rng: random.Random,
           *, boundary: bool) -> Synthetic:
    """Fill ``template``; each typed placeholder becomes a span. ``boundary``: wrap, lower-case."""
    pre, post = rng.choice(_WRAP) if boundary else ("", "")
    out, spans, i = [pre], [], 0
    pos = len(pre)
    while i < len(template):
        j = template.find("{", i)
        if j < 0:
            out.append(template[i:])
            pos += len(template) - i
            break
        out.append(template[i:j])
        pos += j - i
        k = template.index("}", j)
        field = template[j + 1:k]
        value = " ".join(fields[field]().replace("\n", ", ").split())
        if field in FIELD_TYPES:
            spans.append((pos, pos + len(value), FIELD_TYPES[field]))
        out.append(value)
        pos += len(value)
        i = k + 1
    out.append(post)
    text = "".join(out)
    if boundary and rng.random() < 0.2 and len(text.lower()) == len(text):
        text = text.lower()
    return Synthetic(text, tuple(spans), template_id(template))


def generate(n: int, *, part: str, prompt: str, seed: int = 0, negatives: float = 0.15) -> list[dict[str, Any]]:
    """``n`` records from the ``part`` ("eval" or "train") template pool, with provenance.

    Training data mixes in ``negatives`` (a share of entity-free sentences) and boundary cases;
    the eval set keeps the plain form of its own templates plus the same share of negatives.
    """
    from faker import Faker

    rng = random.Random(f"{seed}:{part}")
    ev, tr = pools()
    pool = ev if part == "eval" else tr
    pii = [t for t in pool if t in TEMPLATES]
    neg = [t for t in pool if t in NEGATIVES] or list(NEGATIVES)
    fakers: dict[str, Any] = {}
    prompt_hash = hashlib.sha256(prompt.encode()).hexdigest()[:16]
    records = []
    for _ in range(n):
        locale = rng.choice(LOCALES)
        if locale not in fakers:
            fakers[locale] = Faker(locale)
            fakers[locale].seed_instance(rng.randint(0, 2**31))
        fake = fakers[locale]
        fields = _fields(fake, rng)
        if "en_US" not in fakers:
            fakers["en_US"] = Faker("en_US")
            fakers["en_US"].seed_instance(rng.randint(0, 2**31))
        en = fakers["en_US"]
        us = _fields(en, rng)
        fields["ssn"], fields["driver_license"] = us["ssn"], us["driver_license"]  # US-only types
        template = rng.choice(neg if rng.random() < negatives else pii)
        try:
            rec = render(template, fields, rng, boundary=part == "train" and rng.random() < 0.4)
        except AttributeError:  # a locale without one of the providers: take en_US's
            rec = render(template, us, rng, boundary=False)
        records.append(rec.to_record(part=part, prompt_hash=prompt_hash, locale=locale))
    return records
