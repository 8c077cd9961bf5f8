"""The shop a command talks to: the services' base URLs (``urls.json``) and the one rule that picks them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ApiError, load_json_file

@dataclass(frozen=True, slots=True)
class Target:
    """Base URLs of the three services (``urls.json``: ORDER_URL, PAYMENT_URL, STOCK_URL)."""

    order_url: str
    payment_url: str
    stock_url: str

    def __post_init__(self) -> None:
        for url in (self.order_url, self.payment_url, self.stock_url):
            check_base_url(url)

    @classmethod
    def single(cls, base_url: str) -> "Target":
        """All three services behind one gateway at ``base_url``."""
        b = base_url.rstrip("/")
        return cls(b, b, b)

    def base(self, service: str) -> str:
        """Base URL of ``service`` ("orders", "stock" or "payment")."""
        return {"orders": self.order_url, "stock": self.stock_url, "payment": self.payment_url}[service]

    def as_dict(self) -> dict[str, str]:
        """The target in urls.json's shape."""
        return {"ORDER_URL": self.order_url, "PAYMENT_URL": self.payment_url, "STOCK_URL": self.stock_url}


def check_base_url(url: Any) -> str:
    """``url`` if it is a usable base URL (http/https, a host, a port in 1-65535), else :class:`ApiError`.

    The one place base URLs are checked: ``--url``, urls.json and every :class:`Target` go through it.
    """
    problem = _base_url_problem(url)
    if problem:
        raise ApiError(f"bad base URL {url!r}: {problem}")
    return url


def _base_url_problem(url: Any) -> str:
    if not isinstance(url, str):
        return "it is not a string"
    try:
        parts = urlsplit(url)
    except ValueError as e:  # e.g. an unclosed IPv6 bracket
        return str(e)
    if parts.scheme not in ("http", "https"):
        return "it must start with http:// or https://"
    if not parts.hostname:
        return "it has no host"
    try:
        port = parts.port
    except ValueError:  # out of range or not a number
        port = 0
    return "its port must be a number in 1-65535" if port == 0 else ""


DEFAULT_BASE_URL = "http://localhost:8000"
IMPLICIT_URLS = "urls.json"  # read from the working directory when neither --urls nor --url is given


def choose_target(urls_path: str | Path | None, base_url: str | None, *, urls_option: str = "--urls",
                  url_option: str = "--url", default: bool = True) -> Target:
    """The shop a command talks to: a urls.json path or one gateway base URL, else ./urls.json, else localhost:8000.

    The one target rule of every command (replay, shrink, capacity, ab, record, grade), with the same
    one-line errors: a missing or malformed urls file names the file and key, a bad URL says what is
    wrong with it. ``urls_option`` and ``url_option`` name the two in the errors (record's URL option
    is ``--upstream``, TEAMS.toml's keys are ``urls`` and ``url``); ``default=False``: one of them
    is required (record forwards to a shop it must be told).
    """
    both, neither = bool(urls_path and base_url), not (urls_path or base_url)
    if both or (neither and not default):
        raise ApiError(f"give either {urls_option} or {url_option}, not both" if default else
                       f"give exactly one of {urls_option} or {url_option}")
    if urls_path:
        return load_urls(urls_path)
    if base_url:
        return Target.single(base_url)
    implicit = urls_file_read(None, None)
    return load_urls(implicit) if implicit is not None else Target.single(DEFAULT_BASE_URL)


def urls_file_read(urls_path: str | Path | None, base_url: str | None) -> str | Path | None:
    """The urls.json :func:`choose_target` reads for these options (``./urls.json`` when neither is given and
    it exists), or None: an input that an output file must never replace."""
    if urls_path or base_url:
        return urls_path
    return IMPLICIT_URLS if os.path.exists(IMPLICIT_URLS) else None


def parse_target(spec: str, option: str) -> Target:
    """The target named by one string (ab's ``--a``/``--b``): a base URL (``scheme://…``) or a urls.json path.

    Goes through :func:`choose_target`; its errors are prefixed with ``option``. A string that is
    neither a URL nor an existing file is an :class:`ApiError` saying so.
    """
    try:
        if "://" in spec:
            return choose_target(None, spec)
        if os.path.isfile(spec):
            return choose_target(spec, None)
    except ApiError as e:
        raise ApiError(f"{option}: {e}") from None
    raise ApiError(f"{option} {spec!r} is neither a base URL (http://…) nor an existing urls.json file")


def load_urls(path: str | Path) -> Target:
    """Read a course-style ``urls.json``; a missing key or a non-http URL is a one-line error."""
    data = load_json_file(path, "urls file")
    if not isinstance(data, dict):
        raise ApiError(f"{path}: urls file must be a JSON object with ORDER_URL, PAYMENT_URL, STOCK_URL")
    vals = {}
    for key in ("ORDER_URL", "PAYMENT_URL", "STOCK_URL"):
        v = data.get(key)
        if v is None:
            raise ApiError(f"{path}: {key} missing (an http:// or https:// URL)")
        try:
            check_base_url(v)
        except ApiError as e:
            raise ApiError(f"{path}: {key}: {e}") from None
        vals[key] = v.rstrip("/")
    return Target(vals["ORDER_URL"], vals["PAYMENT_URL"], vals["STOCK_URL"])


def parse_listen(value: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; port 0 = any free port) as (host, port): where one of
    our own servers listens (``replay --ui``, ``record --listen``). A ValueError names ``option``.

    A bare ``PORT`` or ``:PORT`` is refused with the fix named: Locust's ``--web-port`` binds every
    interface, so which host was meant is the user's to say.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        hint = f"; name the host too: {option}=127.0.0.1:{port}" if port.isdigit() and int(port) <= 65535 else ""
        raise ValueError(f"{option} takes HOST:PORT (e.g. 127.0.0.1:8089), got {value!r}{hint}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)
