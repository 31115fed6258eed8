"""Request parameters: Stripe's nested form encoding, typed reads, and error answers."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from tests.fake_stripe.records import Obj


def decode_params(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``a[b][0][c]=v`` / ``expand[]=x`` pairs into nested dicts; all-digit keys become lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head = key.split("[", 1)[0]
        parts = [head, *re.findall(r"\[([^\]]*)\]", key[len(head) :])]
        node = root
        for part in parts[:-1]:
            part = part or str(len(node))
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1] or str(len(node))] = value
    return _listify(root, "")


def _listify(node: Any, key: str) -> Any:
    if not isinstance(node, dict):
        return node
    out = {k: _listify(v, k) for k, v in node.items()}
    if out and key != "metadata" and all(k.isdigit() for k in out):
        return [out[k] for k in sorted(out, key=int)]
    return out


class ApiError(Exception):
    """An error answer. ``stored`` says whether idempotency keeps it (the endpoint had begun)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        stored: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = (
            status,
            message,
            kind,
            code,
            param,
        )
        self.stored, self.headers = stored, dict(headers or {})

    def body(self) -> Obj:
        error: Obj = {"type": self.kind, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        return {"error": error}


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, code=code, param=param, stored=False)


def missing(kind: str, object_id: str, param: str = "id", status: int = 404) -> ApiError:
    name = kind.replace("_", " ")  # "webhook endpoint", as Stripe writes it
    return ApiError(status, f"No such {name}: '{object_id}'", code="resource_missing", param=param)


class Params:
    """Typed reads of one level of decoded parameters; error params in Stripe's a[b][c] form."""

    def __init__(self, data: Any, prefix: str = "") -> None:
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}[{key}]" if self.prefix else key

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def only(self, *allowed: str) -> None:
        for key in self.data:
            if key not in allowed:
                raise invalid(
                    f"Received unknown parameter: {self.name(key)}",
                    self.name(key),
                    "parameter_unknown",
                )

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise invalid(
                    f"Missing required param: {self.name(key)}.",
                    self.name(key),
                    "parameter_missing",
                )
            return None
        if not isinstance(value, str):
            raise invalid(f"Invalid string: {value!r}", self.name(key))
        if value == "" and required:
            raise invalid(
                f"You passed an empty string for '{self.name(key)}'. We assume empty "
                f"values are an attempt to unset a parameter; however "
                f"'{self.name(key)}' cannot be unset.",
                self.name(key),
                "parameter_invalid_empty",
            )
        return value

    def required(self, key: str) -> str:
        value = self.text(key, required=True)
        assert value is not None
        return value

    def nullable(self, key: str) -> str | None:
        """A string that an empty value unsets (check ``key in params`` first)."""
        return self.text(key) or None

    def integer(
        self,
        key: str,
        *,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = self.text(key, required=required)
        if value is None:
            return None
        try:
            number = int(value)
        except ValueError:
            raise invalid(
                f"Invalid integer: {value}", self.name(key), "parameter_invalid_integer"
            ) from None
        if minimum is not None and number < minimum:
            raise invalid(
                f"This value must be greater than or equal to {minimum}.",
                self.name(key),
                "parameter_invalid_integer",
            )
        if maximum is not None and number > maximum:
            raise invalid(
                f"This value must be less than or equal to {maximum}.",
                self.name(key),
                "parameter_invalid_integer",
            )
        return number

    def decimal(self, key: str) -> Decimal | None:
        value = self.text(key)
        try:
            return None if value is None else Decimal(value)
        except InvalidOperation:
            raise invalid(f"Invalid decimal: {value}", self.name(key)) from None

    def boolean(self, key: str) -> bool | None:
        value = self.text(key)
        if value is None:
            return None
        if value not in ("true", "false"):
            raise invalid(f"Invalid boolean: {value}", self.name(key))
        return value == "true"

    def choice(self, key: str, options: tuple[str, ...], *, required: bool = False) -> str | None:
        value = self.text(key, required=required)
        if value is not None and value not in options:
            raise invalid(
                f"Invalid {self.name(key)}: must be one of {', '.join(options)}", self.name(key)
            )
        return value

    def sub(self, key: str, *, required: bool = False) -> Params | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise invalid(
                    f"Missing required param: {self.name(key)}.",
                    self.name(key),
                    "parameter_missing",
                )
            return None
        if not isinstance(value, dict):
            raise invalid(f"Invalid object: {self.name(key)}", self.name(key))
        return Params(value, self.name(key))

    def items(self, key: str) -> list[Params]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise invalid(f"Invalid array: {self.name(key)}", self.name(key))
        return [Params(v, f"{self.name(key)}[{i}]") for i, v in enumerate(value)]

    def strings(self, key: str) -> list[str]:
        value = self.data.get(key)
        if value is None or value == "":
            return []
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in values):
            raise invalid(f"Invalid array: {self.name(key)}", self.name(key))
        return list(values)

    def metadata(self, old: Mapping[str, str] | None = None) -> dict[str, str]:
        """Stripe's merge: keys set, empty values removed, ``metadata=`` clears all."""
        merged = dict(old or {})
        value = self.data.get("metadata")
        if value == "":
            return {}
        if value is not None and not isinstance(value, dict):
            raise invalid("Invalid hash", self.name("metadata"))
        for key, item in (value or {}).items():
            if not isinstance(item, str):
                raise invalid("Invalid metadata value", self.name("metadata"))
            if item == "":
                merged.pop(key, None)
            else:
                merged[key] = item
        return merged


def created_filter(params: Params, key: str = "created") -> Callable[[int], bool]:
    """``created=123`` or ``created[gt|gte|lt|lte]=123``."""
    if isinstance(params.data.get(key), str):
        exact = params.integer(key)
        return lambda ts: ts == exact
    bounds = params.sub(key)
    if bounds is None:
        return lambda ts: True
    bounds.only("gt", "gte", "lt", "lte")
    gt, gte, lt, lte = (bounds.integer(k) for k in ("gt", "gte", "lt", "lte"))
    return lambda ts: (
        (gt is None or ts > gt)
        and (gte is None or ts >= gte)
        and (lt is None or ts < lt)
        and (lte is None or ts <= lte)
    )
