"""Lua scripts on the runtime's redis: each loaded once per process and run as one EVALSHA,
batched with the process's other commands in flight when it serves under gevent
(spillway.redis_batch).

A script the server has forgotten (a restart, SCRIPT FLUSH) is loaded again and the call
repeated: NOSCRIPT means it did not run. redis-py's Script does the same for calls that
are not batched.
"""

from collections.abc import Callable
from pathlib import Path

from flask import current_app
from redis import Redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from spillway.clients import redis_store
from spillway.redis_batch import batcher_for
from spillway.redis_durability import Durability

_loaded: dict[str, Script] = {}


def script(path: Path, build: Callable[[bytes], bytes] | None = None) -> Script:
    """The script in ``path`` (or what ``build`` makes of its text), once per process."""
    name = f"{path}:{build.__qualname__}" if build else str(path)
    if name not in _loaded:
        text = path.read_bytes()
        _loaded[name] = Script(None, build(text) if build else text)
    return _loaded[name]


def run(lua: Script, keys: list, args: list, durable: bool = False):
    """EVALSHA ``lua`` on the app's redis: one round trip, shared with the process's
    concurrent calls where it can be (see the module's docstring). ``durable``: its reply
    counts only once the durability policy's wait confirms its writes (else NotDurable)."""
    client = redis_store.client
    durability = _durability()
    batcher = current_app.config["REDIS_BATCHING"] and batcher_for(
        client, current_app.extensions, durability
    )
    if not batcher:
        if durable and durability.waits:
            return _run_and_wait(client, lua, keys, args, durability)
        return lua(keys=keys, args=args, client=client)
    try:
        return batcher.execute("EVALSHA", lua.sha, len(keys), *keys, *args, durable=durable)
    except NoScriptError:
        lua.sha = client.script_load(lua.script)
        return batcher.execute("EVALSHA", lua.sha, len(keys), *keys, *args, durable=durable)


def _durability() -> Durability:
    """The app's durability policy, read from its config once (not once per purchase)."""
    known = current_app.extensions.get("redis_durability")
    if known is None:
        known = current_app.extensions["redis_durability"] = Durability.from_config(
            current_app.config
        )
    return known


def _run_and_wait(client: Redis, lua: Script, keys: list, args: list, durability: Durability):
    """The script and the wait on one connection (a wait counts its own connection's
    writes), in one round trip."""
    for attempt in range(2):
        pipe = client.pipeline(transaction=False)
        pipe.evalsha(lua.sha, len(keys), *keys, *args)
        pipe.execute_command(*durability.command())
        reply, waited = pipe.execute(raise_on_error=False)
        if isinstance(reply, NoScriptError) and not attempt:
            lua.sha = client.script_load(lua.script)
            continue
        if isinstance(reply, Exception):
            raise reply
        durability.check(waited)
        return reply
