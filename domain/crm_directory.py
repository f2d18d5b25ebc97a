"""What routing needs to know from the CRM: its users (to match reps by e-mail) and its accounts (to find the company
a lead works for, by website domain or by company name)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable

# Addresses anyone can have: a lead writing from one of these says nothing about the company they work for.
FREE_MAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "hotmail.co.uk", "live.com", "msn.com",
    "yahoo.com", "yahoo.co.uk", "ymail.com", "icloud.com", "me.com", "mac.com", "aol.com", "gmx.de", "gmx.net",
    "gmx.com", "web.de", "t-online.de", "freenet.de", "proton.me", "protonmail.com", "mail.com", "zoho.com",
    "yandex.com", "yandex.ru", "qq.com", "163.com",
})

# Legal forms that end company names; "Acme GmbH & Co. KG" and "ACME, Inc." are both the company acme.
LEGAL_SUFFIXES = frozenset({
    "inc", "incorporated", "corp", "corporation", "co", "company", "ltd", "limited", "llc", "llp", "lp", "plc",
    "gmbh", "mbh", "ag", "kg", "kgaa", "ug", "se", "sa", "sas", "sarl", "srl", "spa", "bv", "nv", "ab", "as", "asa",
    "oy", "oyj", "aps", "pty", "pte", "kk",
})


def email_domain(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    return email.rsplit("@", 1)[1].strip().strip(".").lower() or None


def website_domain(website: str | None) -> str | None:
    """'https://www.Acme.com/about' -> 'acme.com'."""
    if not website or not website.strip():
        return None
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", website.strip().lower())
    host = re.split(r"[/?#]", host, maxsplit=1)[0].rsplit("@", 1)[-1].split(":", 1)[0].strip(".")
    host = host[4:] if host.startswith("www.") else host
    return host if "." in host else None


def company_key(name: str | None) -> str | None:
    """A company name as accounts are matched by it: accents, case, punctuation and trailing legal forms removed."""
    if not name:
        return None
    text = unicodedata.normalize("NFKD", name)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    # Dotted abbreviations first, so "S.A." and "B.V." read as the words "sa" and "bv".
    text = re.sub(r"\b((?:\w\.){2,})", lambda m: m.group(1).replace(".", ""), text)
    words = re.sub(r"[^\w]+", " ", text).split()
    while len(words) > 1 and words[-1] in LEGAL_SUFFIXES:
        words.pop()
    return " ".join(words) or None


@dataclass(frozen=True)
class DirectoryUser:
    """A CRM user, as the CRM pull reads them."""

    crm_id: str
    email: str | None
    name: str = ""
    active: bool = True
    manager_id: str | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class DirectoryAccount:
    """A CRM account (a company a rep already owns)."""

    crm_id: str
    name: str | None
    website_domain: str | None
    owner_id: str | None


@dataclass(frozen=True)
class CrmDirectory:
    """The CRM's users and accounts, indexed for routing: users by id and by e-mail, accounts by domain and name."""

    users: tuple[DirectoryUser, ...] = ()
    accounts: tuple[DirectoryAccount, ...] = ()
    _by_id: dict[str, DirectoryUser] = field(init=False, repr=False, compare=False)
    _active_by_email: dict[str, DirectoryUser] = field(init=False, repr=False, compare=False)
    _by_domain: dict[str, tuple[DirectoryAccount, ...]] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, tuple[DirectoryAccount, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {u.crm_id: u for u in self.users})
        active: dict[str, DirectoryUser] = {}
        for user in self.users:
            if user.active and user.email:
                active.setdefault(user.email.strip().lower(), user)
        object.__setattr__(self, "_active_by_email", active)
        object.__setattr__(self, "_by_domain", _group(self.accounts, lambda a: a.website_domain))
        object.__setattr__(self, "_by_name", _group(self.accounts, lambda a: company_key(a.name)))

    @classmethod
    def of(cls, users: Iterable[Any], accounts: Iterable[Any] = ()) -> CrmDirectory:
        """From the CRM pull's records (anything with crm_id, email, name, active, manager_id, timezone; accounts
        with crm_id, name, website, owner_id and deleted); deleted accounts are left out."""
        return cls(
            tuple(DirectoryUser(u.crm_id, u.email, u.name or "", bool(u.active), u.manager_id, u.timezone)
                  for u in users),
            tuple(DirectoryAccount(a.crm_id, a.name, website_domain(a.website), a.owner_id)
                  for a in accounts if not getattr(a, "deleted", False)))

    def user(self, crm_id: str | None) -> DirectoryUser | None:
        return self._by_id.get(crm_id) if crm_id else None

    def active_user(self, email: str) -> DirectoryUser | None:
        """The active CRM user with this e-mail (case and spaces ignored)."""
        return self._active_by_email.get(email.strip().lower())

    def accounts_by_domain(self, domain: str) -> tuple[str, tuple[DirectoryAccount, ...]] | None:
        """The accounts whose website is `domain` or a parent of it (eu.acme.com finds acme.com), most specific
        first, with the domain that matched."""
        labels = domain.lower().strip(".").split(".")
        for start in range(len(labels) - 1):
            found = self._by_domain.get(".".join(labels[start:]))
            if found:
                return ".".join(labels[start:]), found
        return None

    def accounts_by_name(self, company: str) -> tuple[DirectoryAccount, ...]:
        key = company_key(company)
        return self._by_name.get(key, ()) if key else ()


def _group(accounts: Iterable[DirectoryAccount], key: Any) -> dict[str, tuple[DirectoryAccount, ...]]:
    grouped: dict[str, list[DirectoryAccount]] = {}
    for account in accounts:
        value = key(account)
        if value:
            grouped.setdefault(value, []).append(account)
    return {value: tuple(found) for value, found in grouped.items()}
