"""workspace/executeCommand: the editor contract's command names, each a few lines —
read the arguments, call the session (and through it the engine), return JSON.

A user's mistake (an unknown experiment, a proposal already decided, no loop running, a bad
ratchet.toml) comes back as an LSP error whose message is the plain sentence to show; the
server never crashes on one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from ..config import ConfigError
from ..errors import RatchetError
from . import names

if TYPE_CHECKING:
    from .session import Session

UNADVERTISED = names.UNADVERTISED


class RequestFailed(JsonRpcException):
    """LSP's RequestFailed: the request was well formed, but it cannot be done now."""

    CODE = -32803
    MESSAGE = "Request failed"


class ArgumentError(Exception):
    """A command was given arguments it cannot use; the message says what it wants."""


Handler = Callable[["Session", list[Any]], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        HANDLERS[name] = handler
        return handler

    return register


def register(server: LanguageServer, session_ready: Callable[[], Awaitable[Session]]) -> None:
    """Registers every command on the server (and so advertises all but UNADVERTISED); each
    runs on the session `session_ready` gives once the server has one."""
    for name, handler in HANDLERS.items():
        server.command(name)(_wrap(session_ready, handler))


def _wrap(
    session_ready: Callable[[], Awaitable[Session]], handler: Handler
) -> Callable[..., Awaitable[Any]]:
    # pygls passes the server first (a parameter named `ls`), then the arguments as sent.
    async def execute(ls: LanguageServer, *args: Any) -> Any:
        try:
            session = await session_ready()
            return await handler(session, list(args))
        except ArgumentError as error:
            raise JsonRpcInvalidParams(message=str(error)) from None
        except (RatchetError, ConfigError) as error:
            raise RequestFailed(message=str(error)) from None

    return execute


# --- arguments ---------------------------------------------------------------------------------


def _first(args: list[Any], *keys: str) -> Any:
    value = args[0] if args else None
    if isinstance(value, dict):
        for key in keys:
            if key in value:
                return value[key]
        return None
    return value


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def experiment_arg(args: list[Any], *, required: bool, best: bool = False) -> int | str | None:
    value = _first(args, "experiment", "id")
    wanted = 'an experiment number or "best"' if best else "an experiment number"
    if value is None:
        if required:
            raise ArgumentError(f"name {wanted}")
        return None
    if best and isinstance(value, str) and value.strip().lower() == "best":
        return "best"
    number = _int(value)
    if number is None or number < 0:
        raise ArgumentError(f"expected {wanted}, got {value!r}")
    return number


def _text_arg(args: list[Any], *keys: str) -> str | None:
    value = _first(args, *keys)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ArgumentError(f"expected text, got {value!r}")
    return value


def api_key_arg(args: list[Any]) -> str | None:
    """`{apiKey: "..."}`: the agent's key as the editor keeps it (VS Code's SecretStorage),
    for the loop process these commands may start. It goes into that process's environment
    only; never into a message, a log or an error (an error names the problem, not the key)."""
    if not args or not isinstance(args[0], dict) or args[0].get("apiKey") is None:
        return None
    key = args[0]["apiKey"]
    if not isinstance(key, str):
        raise ArgumentError("`apiKey` is the agent's API key, as text")
    key = key.strip()
    if not key:
        return None
    if len(key) > 4096 or any(c.isspace() or not c.isprintable() for c in key):
        raise ArgumentError("`apiKey` is not an API key: one line of printable text")
    return key


# --- the commands ------------------------------------------------------------------------------


def _limit_arg(args: list[Any], key: str, least: int) -> int | None:
    value = _first(args, key) if args and isinstance(args[0], dict) else None
    if value is None:
        return None
    number = _int(value)
    if number is None or number < least:
        raise ArgumentError(f"`{key}` is a whole number of at least {least}, not {value!r}")
    return number


@command(names.START)
async def start(session: Session, args: list[Any]) -> Any:
    value = _first(args, "maxExperiments", "max", "max_experiments")
    limit = None if value is None else _int(value)
    if value is not None and (limit is None or limit < 1):
        raise ArgumentError(
            f"the most experiments to run is a whole number of 1 or more, not {value!r}"
        )
    await session.start_loop(limit, api_key_arg(args))
    return await session.status_payload()


@command(names.STOP)
async def stop(session: Session, args: list[Any]) -> Any:
    await session.stop_loop()
    return await session.status_payload()


@command(names.PAUSE)
async def pause(session: Session, args: list[Any]) -> Any:
    await session.pause()
    return await session.status_payload()


@command(names.RESUME)
async def resume(session: Session, args: list[Any]) -> Any:
    await session.resume()
    return await session.status_payload()


@command(names.PROPOSE_ONCE)
async def propose_once(session: Session, args: list[Any]) -> Any:
    await session.propose_once(api_key_arg(args))
    return await session.status_payload()


@command(names.ACCEPT)
async def accept(session: Session, args: list[Any]) -> Any:
    number = experiment_arg(args, required=False)
    assert not isinstance(number, str)
    return {"experiment": await session.decide(number, True), "accepted": True}


@command(names.REJECT)
async def reject(session: Session, args: list[Any]) -> Any:
    number = experiment_arg(args, required=False)
    assert not isinstance(number, str)
    return {"experiment": await session.decide(number, False), "accepted": False}


@command(names.STOP_EXPERIMENT)
async def stop_experiment(session: Session, args: list[Any]) -> Any:
    number = experiment_arg(args, required=True)
    assert isinstance(number, int)
    return await session.stop_experiment(number)


@command(names.APPLY)
async def apply(session: Session, args: list[Any]) -> Any:
    which = experiment_arg(args, required=False, best=True)
    return await session.applier.apply("best" if which is None else which)


@command(names.REVERT)
async def revert(session: Session, args: list[Any]) -> Any:
    number = experiment_arg(args, required=True)
    assert isinstance(number, int)
    await session.revert(number, api_key_arg(args))
    return await session.status_payload()


@command(names.RUN_BUFFER)
async def run_buffer(session: Session, args: list[Any]) -> Any:
    description = _text_arg(args, "description") or "an edit made in the editor"
    await session.run_buffer(description, api_key_arg(args))
    return await session.status_payload()


@command(names.NOTE)
async def note(session: Session, args: list[Any]) -> Any:
    text = _text_arg(args, "text", "note")
    if not text or not text.strip():
        raise ArgumentError('write the note for the agent, e.g. "try a smaller learning rate"')
    await session.note(text.strip())
    return {"noted": text.strip()}


@command(names.EXPERIMENTS)
async def experiments(session: Session, args: list[Any]) -> Any:
    """All light rows, or `{since: N, limit: M}`: those numbered above N, at most M."""
    since, limit = _limit_arg(args, "since", -1), _limit_arg(args, "limit", 1)
    return await session.experiments_json(since, limit)


@command(names.EXPERIMENT)
async def experiment(session: Session, args: list[Any]) -> Any:
    """One experiment's full row (its diff, log tail and trace tail included), with `cases`:
    what it fixed and broke against the best it was made from."""
    number = experiment_arg(args, required=True)
    assert isinstance(number, int)
    return await session.experiment_json(number)


@command(names.STATUS)
async def status(session: Session, args: list[Any]) -> Any:
    return await session.status_payload()


@command(names.OPEN_DIFF)
async def open_diff(session: Session, args: list[Any]) -> Any:
    """What a client without a diff view gets: the diff opened as a document (where the
    client can show one), else as a message."""
    payload = args[0] if args and isinstance(args[0], dict) and "left" in args[0] else None
    if payload is not None:
        number = experiment_arg([payload.get("experiment")], required=True)
        assert isinstance(number, int)
        shown = await session.applier.show_diff(number, payload.get("diff") or None)
        return {**payload, **shown}
    number = experiment_arg(args, required=True)
    assert isinstance(number, int)
    return await session.applier.show_diff(number)


@command(names.DIFF_TEXT)
async def diff_text(session: Session, args: list[Any]) -> Any:
    """The text of a `ratchet:/exp/N.diff` document (or of experiment N): {experiment, text}."""
    value = _first(args, "uri", "experiment", "id")
    if isinstance(value, str) and not value.startswith(names.DIFF_SCHEME + ":"):
        value = _int(value)
    return await session.diff_text(value)


@command(names.REPORT)
async def report(session: Session, args: list[Any]) -> Any:
    """The loop's HTML report, written to .ratchet/report.html: {path, uri, shown, message}.
    The server asks the client to open it unless given `{show: false}` (a client that shows
    it itself, as VS Code's webview does)."""
    show = _options(args).get("show", True)
    if not isinstance(show, bool):
        raise ArgumentError(f"`show` is true or false, not {show!r}")
    return await session.morning.report(show)


@command(names.FINALIZE)
async def finalize(session: Session, args: list[Any]) -> Any:
    """The keeps as a new review branch on the user's branch (which never moves), or a patch
    series: `{squash?: bool, exclude?: [N, ...], patch?: "folder"}`."""
    options = _options(args)
    squash = options.get("squash", False)
    if not isinstance(squash, bool):
        raise ArgumentError(f"`squash` is true or false, not {squash!r}")
    patch = options.get("patch")
    if patch is not None and (not isinstance(patch, str) or not patch.strip()):
        raise ArgumentError(f"`patch` is the folder to write the patches to, not {patch!r}")
    return await session.morning.finalize(squash, _numbers(options.get("exclude")), patch)


def _options(args: list[Any]) -> dict[str, Any]:
    if not args or args[0] is None:
        return {}
    if not isinstance(args[0], dict):
        raise ArgumentError(f"expected an object of options, got {args[0]!r}")
    return args[0]


def _numbers(value: Any) -> set[int]:
    """`exclude`: a list of experiment numbers (one number alone is taken as a list)."""
    if value is None:
        return set()
    values = value if isinstance(value, list) else [value]
    numbers = [_int(item) for item in values]
    if any(number is None or number < 0 for number in numbers):
        raise ArgumentError(f"`exclude` is a list of experiment numbers, not {value!r}")
    return {number for number in numbers if number is not None}
