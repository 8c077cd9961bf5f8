"""The reference shop: an aiohttp.web implementation of API.md, the embedded default target.

``make_app`` builds the one-port gateway application, ``make_split_apps`` the three services,
``ShopThread`` serves either from a background thread (tests, ``wdm-replay demo``) and ``serve``
runs ``wdm-replay serve``; ``durable`` keeps the state in SQLite (``--data DIR``). See docs/shop.md.
"""

from __future__ import annotations

from .inject import DURABLE_BUGS, FAULT_EFFECTS, FAULT_KINDS, InjectError, parse_inject
from .app import ShopConfig, ShopError, ShopState, connect_peers, make_app, make_split_apps
from .runner import INJECT_EFFECTS, Peers, RunningShop, ShopThread, banner, serve, start_shop
from .store import INJECT_KINDS, Refused

__all__ = [
    "DURABLE_BUGS",
    "FAULT_EFFECTS",
    "FAULT_KINDS",
    "InjectError",
    "parse_inject",
    "INJECT_EFFECTS",
    "INJECT_KINDS",
    "Peers",
    "Refused",
    "RunningShop",
    "ShopConfig",
    "ShopError",
    "ShopState",
    "ShopThread",
    "banner",
    "connect_peers",
    "make_app",
    "make_split_apps",
    "serve",
    "start_shop",
]
