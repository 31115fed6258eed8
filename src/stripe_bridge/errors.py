"""One base error; permanent errors are never retried, transient ones are, with backoff."""


class BridgeError(Exception):
    """Base class of every error the bridge raises on purpose."""

    code = "bridge_error"
    http_status = 500


class ConfigError(BridgeError):
    """A setting is missing or malformed."""

    code = "config_error"


class BadRequest(BridgeError):
    """Input that can never be accepted: answered 400, nothing stored."""

    code = "bad_request"
    http_status = 400


class PayloadTooLarge(BadRequest):
    code = "payload_too_large"
    http_status = 413


class PermanentError(BridgeError):
    """Work that will fail again however often it is retried (e.g. a malformed payload)."""

    code = "permanent_error"
    http_status = 422


class TransientError(BridgeError):
    """Work that may succeed later (network, lock timeouts, a service briefly down)."""

    code = "transient_error"
    http_status = 503


class Unreachable(TransientError):
    """A service the bridge needs (the database, Redis) did not answer."""

    code = "unreachable"


class NotMigrated(BridgeError):
    """The database is not at this version's latest migration."""

    code = "not_migrated"
    http_status = 503


class StoreUnavailable(TransientError):
    """The inbox could not store an event; the sender should retry."""

    code = "store_unavailable"


class Unauthorized(BridgeError):
    code = "unauthorized"
    http_status = 401


class Forbidden(BridgeError):
    code = "forbidden"
    http_status = 403


class NotFound(BridgeError):
    code = "not_found"
    http_status = 404


class Conflict(BridgeError):
    code = "conflict"
    http_status = 409


class UnknownWorkspace(NotFound):
    """A route, an event or a command named a workspace that does not exist."""

    code = "unknown_workspace"


class TokenExpired(TransientError):
    """An installed app's access token expired, its refresh late (is the scheduler running?):
    Stripe would refuse every call for good (401), so the work waits for the refresh."""

    code = "token_expired"
