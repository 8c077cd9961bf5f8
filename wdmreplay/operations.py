"""The shop's operations and dialects: the operation table, routes, URL rendering and matching.

The one leaf every layer may import (with ``errors`` and ``targets``). A trace speaks in operations; a
dialect maps each operation to a method and a path (API.md).

Hot-path note: :meth:`Dialect.render` is called once per replayed request, so routes are compiled
once into ``str.format`` templates with positional fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import ApiError, load_json_file

# Parameter kinds: entity references ("item", "user", "order") and integers ("int").
ENTITY_KINDS = ("item", "user", "order")


@dataclass(frozen=True, slots=True)
class Operation:
    """One shop operation: its service, its named parameters and what it creates."""

    name: str
    service: str  # "orders" | "stock" | "payment"
    params: tuple[str, ...]
    kinds: tuple[str, ...]  # per param: "item" | "user" | "order" | "int"
    creates: str | None = None  # entity kind whose id the response returns, if any
    reads: str | None = None  # entity kind whose state the response returns (find_*)
    mutates: bool = True

    @property
    def id_key(self) -> str | None:
        """JSON key of the id in a create response (``item_id``, ``user_id``, ``order_id``)."""
        return f"{self.creates}_id" if self.creates else None


def _op(name, service, params="", kinds="", creates=None, reads=None, mutates=True) -> Operation:
    p = tuple(params.split()) if params else ()
    k = tuple(kinds.split()) if kinds else ()
    assert len(p) == len(k), name
    return Operation(name, service, p, k, creates, reads, mutates)


OPERATIONS: dict[str, Operation] = {
    o.name: o
    for o in (
        _op("create_item", "stock", "price", "int", creates="item"),
        _op("find_item", "stock", "item", "item", reads="item", mutates=False),
        _op("add_stock", "stock", "item amount", "item int"),
        _op("subtract_stock", "stock", "item amount", "item int"),
        _op("create_user", "payment", creates="user"),
        _op("find_user", "payment", "user", "user", reads="user", mutates=False),
        _op("add_funds", "payment", "user amount", "user int"),
        _op("pay", "payment", "user order amount", "user order int"),
        _op("cancel_payment", "payment", "user order", "user order"),
        _op("payment_status", "payment", "user order", "user order", mutates=False),
        _op("create_order", "orders", "user", "user", creates="order"),
        _op("add_item", "orders", "order item quantity", "order item int"),
        _op("remove_item", "orders", "order item", "order item"),
        _op("remove_order", "orders", "order", "order"),
        _op("find_order", "orders", "order", "order", reads="order", mutates=False),
        _op("checkout", "orders", "order", "order"),
        _op("batch_init_stock", "stock", "n starting_stock item_price", "int int int"),
        _op("batch_init_users", "payment", "n starting_money", "int int"),
        _op("batch_init_orders", "orders", "n n_items n_users item_price", "int int int int"),
    )
}

# Stable small-integer codes for operations, used in the results file's columns.
OP_NAMES: tuple[str, ...] = tuple(OPERATIONS)
OP_CODES: dict[str, int] = {name: i for i, name in enumerate(OP_NAMES)}

# Per entity kind, the operation that reads one back and the one that creates one.
FIND_OP = {"item": "find_item", "user": "find_user", "order": "find_order"}
CREATE_OP = {"item": "create_item", "user": "create_user", "order": "create_order"}
SERVICES = ("orders", "stock", "payment")
URL_KEYS = {"orders": "ORDER_URL", "stock": "STOCK_URL", "payment": "PAYMENT_URL"}

_ROUTES_2024 = {
    "create_item": "POST /stock/item/create/{price}",
    "find_item": "GET /stock/find/{item}",
    "add_stock": "POST /stock/add/{item}/{amount}",
    "subtract_stock": "POST /stock/subtract/{item}/{amount}",
    "create_user": "POST /payment/create_user",
    "find_user": "GET /payment/find_user/{user}",
    "add_funds": "POST /payment/add_funds/{user}/{amount}",
    "pay": "POST /payment/pay/{user}/{amount}",
    "create_order": "POST /orders/create/{user}",
    "add_item": "POST /orders/addItem/{order}/{item}/{quantity}",
    "find_order": "GET /orders/find/{order}",
    "checkout": "POST /orders/checkout/{order}",
    "batch_init_stock": "POST /stock/batch_init/{n}/{starting_stock}/{item_price}",
    "batch_init_users": "POST /payment/batch_init/{n}/{starting_money}",
    "batch_init_orders": "POST /orders/batch_init/{n}/{n_items}/{n_users}/{item_price}",
}

_ROUTES_2023 = {
    k: v for k, v in _ROUTES_2024.items() if not k.startswith("batch_init")
} | {
    "add_item": "POST /orders/addItem/{order}/{item}",
    "remove_item": "DELETE /orders/removeItem/{order}/{item}",
    "remove_order": "DELETE /orders/remove/{order}",
    "pay": "POST /payment/pay/{user}/{order}/{amount}",
    "cancel_payment": "POST /payment/cancel/{user}/{order}",
    "payment_status": "POST /payment/status/{user}/{order}",
}

BUILTIN_ROUTES: dict[str, dict[str, str]] = {"2024": _ROUTES_2024, "2023": _ROUTES_2023}
DEFAULT_DIALECT = "2024"

_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Route:
    """One operation's compiled route: method, path template and a matcher."""

    op: Operation
    method: str
    template: str  # "/stock/add/{item}/{amount}"
    fmt: str  # positional form for str.format: "/stock/add/{0}/{1}"
    pattern: re.Pattern


def compile_route(op: Operation, spec: str) -> Route:
    """Compile ``"METHOD /path/{param}"`` for ``op``; refuse unknown params with a clear message."""
    try:
        method, template = spec.split(None, 1)
    except ValueError:
        raise ApiError(f"route for {op.name}: {spec!r} is not 'METHOD /path'") from None
    if not template.startswith("/"):
        raise ApiError(f"route for {op.name}: path {template!r} must start with '/'")
    names = _FIELD.findall(template)
    unknown = [n for n in names if n not in op.params]
    if unknown:
        raise ApiError(
            f"route for {op.name}: unknown parameter(s) {', '.join(unknown)}; "
            f"it has: {', '.join(op.params) or 'none'}"
        )
    fmt = _FIELD.sub(lambda m: "{%d}" % op.params.index(m.group(1)), template)
    parts = _FIELD.split(template)  # literal, name, literal, name, …, literal
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
    return Route(op, method.upper(), template, fmt, re.compile(f"^{regex}$"))


class Dialect:
    """A mapping of operations to routes (``"2024"``, ``"2023"``, optionally with overrides)."""

    def __init__(self, name: str, routes: Mapping[str, str]):
        self.name = name
        self.routes: dict[str, Route] = {}
        for op_name, spec in routes.items():
            if op_name not in OPERATIONS:
                raise ApiError(f"dialect {name}: unknown operation {op_name!r}")
            self.routes[op_name] = compile_route(OPERATIONS[op_name], spec)

    def __repr__(self) -> str:
        return f"Dialect({self.name!r})"

    def supports(self, op_name: str) -> bool:
        """Whether this dialect has a route for ``op_name``."""
        return op_name in self.routes

    def missing(self, op_names: Iterable[str]) -> list[str]:
        """The operations of ``op_names`` this dialect cannot render, sorted."""
        return sorted({n for n in op_names if n not in self.routes})

    def route(self, op_name: str) -> Route:
        """The compiled route of ``op_name``; :class:`ApiError` if the dialect lacks it."""
        try:
            return self.routes[op_name]
        except KeyError:
            raise ApiError(f"dialect {self.name} has no route for {op_name}") from None

    def render(self, op_name: str, args: Iterable[Any]) -> tuple[str, str]:
        """Method and path of ``op_name`` called with ``args`` (in the operation's param order)."""
        r = self.route(op_name)
        return r.method, r.fmt.format(*args)

    def match(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        """The operation and its raw path parameters for a request, or None if nothing matches."""
        method = method.upper()
        for r in self.routes.values():
            if r.method == method or (r.op.name == "payment_status" and method in ("GET", "POST")):
                m = r.pattern.match(path)
                if m:
                    return r.op.name, m.groupdict()
        return None


def get_dialect(name: str = DEFAULT_DIALECT, overrides: Mapping[str, str] | None = None) -> Dialect:
    """A built-in dialect by name, with optional route overrides (``{"op": "METHOD /path"}``)."""
    if name not in BUILTIN_ROUTES:
        raise ApiError(f"unknown dialect {name!r}; choose one of: {', '.join(BUILTIN_ROUTES)}")
    routes = dict(BUILTIN_ROUTES[name])
    if overrides:
        routes.update(overrides)
    return Dialect(name if not overrides else f"{name}+overrides", routes)


def load_routes(path: str | Path) -> dict[str, str]:
    """Route overrides from a JSON file: ``{"checkout": "POST /orders/checkout/{order}", …}``."""
    data = load_json_file(path, "routes file")
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ApiError(f"{path}: routes file must be a JSON object of operation -> 'METHOD /path'")
    unknown = [k for k in data if k not in OPERATIONS]
    if unknown:
        raise ApiError(f"{path}: unknown operation(s) {', '.join(unknown)}")
    return data


