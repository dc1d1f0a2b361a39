"""Redis budget store: one Lua script each for multi-key reserve, commit and release.

Layout (``prefix`` default ``"tokenward:budget:"``), per counter key ``k``:

* ``{prefix}c:{k}`` hash ``spent``, ``reserved``, ``calls``; expires with its window;
* ``{prefix}r:{k}`` hash reservation id -> amount held on ``k``;
* ``{prefix}z:{k}`` sorted set reservation id -> expiry (epoch seconds).

and per reservation ``{prefix}res:{id}`` hash counter key -> amount (expires after the TTL).
Each script first drops the expired reservations of the keys it touches, so a crashed
process's reservations stop counting the moment their TTL passes, with no background job.
Expiries are set relative to the caller's clock (``EXPIRE now-relative``), so
clock skew between app servers and Redis does not delete live keys. Scripts build key names
from the prefix; on Redis Cluster use a hash-tagged prefix such as
``"{tokenward}:"`` so every key lives in one slot. Amounts are integers below 2**53.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from tokenward.budgets._store import CounterStatus, ReserveItem, ReserveResult
from tokenward.errors import BudgetStoreUnavailableError, IntegrationUnavailableError

__all__ = ["RedisBudgetStore"]

_PURGE = """
local function purge(P, k, now)
  local z = P .. 'z:' .. k
  local dead = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #dead > 0 then
    local r = P .. 'r:' .. k
    local c = P .. 'c:' .. k
    for _, id in ipairs(dead) do
      local amt = redis.call('HGET', r, id)
      if amt then
        redis.call('HINCRBY', c, 'reserved', -tonumber(amt))
        redis.call('HDEL', r, id)
      end
    end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
  end
end
"""

_RESERVE = (
    _PURGE
    + """
local P, now, ttl, rid = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local items = cjson.decode(ARGV[5])
local seen = {}
for _, it in ipairs(items) do
  for _, k in ipairs(it.r) do
    if not seen[k] then purge(P, k, now); seen[k] = true end
  end
end
local totals = {}
for n, it in ipairs(items) do
  local s, r = 0, 0
  for _, k in ipairs(it.r) do
    local v = redis.call('HMGET', P .. 'c:' .. k, 'spent', 'reserved')
    s = s + (tonumber(v[1]) or 0)
    r = r + (tonumber(v[2]) or 0)
  end
  totals[#totals + 1] = string.format('%.0f', s)
  totals[#totals + 1] = string.format('%.0f', r)
  if it.l ~= '' and s + r + tonumber(it.a) > tonumber(it.l) then
    return {0, n, table.concat(totals, ',')}
  end
end
local exp = now + ttl
local res = P .. 'res:' .. rid
for _, it in ipairs(items) do
  local k = it.k
  local c, r, z = P .. 'c:' .. k, P .. 'r:' .. k, P .. 'z:' .. k
  redis.call('HINCRBY', c, 'reserved', it.a)
  redis.call('HINCRBY', r, rid, it.a)
  redis.call('ZADD', z, exp, rid)
  redis.call('HINCRBY', res, k, it.a)
  local keep = exp
  if it.e ~= '' then keep = math.max(keep, tonumber(it.e)) end
  if it.e ~= '' then
    for _, key in ipairs({c, r, z}) do
      local cur = redis.call('TTL', key)
      if cur < 0 or cur < keep - now then redis.call('EXPIRE', key, math.ceil(keep - now)) end
    end
  end
end
redis.call('EXPIRE', res, math.ceil(ttl + 60))
return {1, 0, table.concat(totals, ',')}
"""
)

_DROP = """
local function drop(P, rid)
  local res = P .. 'res:' .. rid
  local held = redis.call('HGETALL', res)
  for j = 1, #held, 2 do
    local k, amt = held[j], held[j + 1]
    local c, r, z = P .. 'c:' .. k, P .. 'r:' .. k, P .. 'z:' .. k
    if redis.call('HDEL', r, rid) == 1 then
      redis.call('HINCRBY', c, 'reserved', -tonumber(amt))
    end
    redis.call('ZREM', z, rid)
  end
  redis.call('DEL', res)
end
"""

_COMMIT = (
    _DROP
    + """
local P, rid = ARGV[1], ARGV[2]
local actuals = cjson.decode(ARGV[3])
drop(P, rid)
for _, a in ipairs(actuals) do
  local c = P .. 'c:' .. a[1]
  redis.call('HINCRBY', c, 'spent', a[2])
  redis.call('HINCRBY', c, 'calls', 1)
  if a[3] ~= '' then
    local cur = redis.call('TTL', c)
    local want = tonumber(a[3]) - tonumber(ARGV[4])
    if cur < 0 or cur < want then redis.call('EXPIRE', c, math.max(1, math.ceil(want))) end
  end
end
return 1
"""
)

_RELEASE = (
    _DROP
    + """
drop(ARGV[1], ARGV[2])
return 1
"""
)

_STATUS = (
    _PURGE
    + """
local P, now = ARGV[1], tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV do
  purge(P, ARGV[i], now)
  local v = redis.call('HMGET', P .. 'c:' .. ARGV[i], 'spent', 'reserved', 'calls')
  out[#out + 1] = (v[1] or '0') .. ',' .. (v[2] or '0') .. ',' .. (v[3] or '0')
end
return out
"""
)


def _redis() -> Any:
    try:
        import redis
    except ImportError:
        raise IntegrationUnavailableError("redis", "redis") from None
    return redis


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v or "")


def _s(v: float | None) -> str:
    return "" if v is None else repr(float(v))


class RedisBudgetStore:
    """Budget counters in Redis (redis-py). Pass a URL (``redis://host:6379/0``,
    ``unix:///tmp/redis.sock``) or an existing ``redis.Redis`` client.

    Connection failures and timeouts raise ``BudgetStoreUnavailableError`` (then ``Budgets``
    applies its ``fail_mode``)."""

    def __init__(
        self,
        url: str | Any,
        *,
        prefix: str = "tokenward:budget:",
        socket_timeout: float = 2.0,
    ) -> None:
        redis = _redis()
        self._errors = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.BusyLoadingError,
            OSError,
        )
        if isinstance(url, str):
            self.client = redis.Redis.from_url(
                url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
            )
            self._owns = True
        else:
            self.client = url
            self._owns = False
        self.prefix = prefix
        self._reserve = self.client.register_script(_RESERVE)
        self._commit = self.client.register_script(_COMMIT)
        self._release = self.client.register_script(_RELEASE)
        self._status = self.client.register_script(_STATUS)

    def _call(self, script: Any, args: list[Any]) -> Any:
        try:
            return script(keys=[], args=args)
        except self._errors as exc:
            raise BudgetStoreUnavailableError(
                f"Redis budget store unavailable: {exc}. Check the server is reachable."
            ) from exc

    def reserve(
        self, items: Sequence[ReserveItem], reservation_id: str, ttl: float, now: float
    ) -> ReserveResult:
        payload = json.dumps(
            [
                {
                    "k": it.key,
                    "r": list(it.keys),
                    "a": str(it.amount),
                    "l": "" if it.limit is None else str(it.limit),
                    "e": _s(it.expires_at),
                }
                for it in items
            ]
        )
        ok, failed, totals = self._call(
            self._reserve, [self.prefix, repr(now), repr(float(ttl)), reservation_id, payload]
        )
        flat = [int(x) for x in _str(totals).split(",") if x]
        tt = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))
        if int(ok):
            return ReserveResult(True, tt)
        return ReserveResult(False, tt, int(failed) - 1)

    def commit(
        self,
        reservation_id: str,
        actuals: Mapping[str, int],
        now: float,
        expires: Mapping[str, float | None] | None = None,
    ) -> None:
        exp = expires or {}
        payload = json.dumps([[k, str(a), _s(exp.get(k))] for k, a in actuals.items()])
        self._call(self._commit, [self.prefix, reservation_id, payload, repr(now)])

    def release(self, reservation_id: str, now: float) -> None:
        self._call(self._release, [self.prefix, reservation_id])

    def status(self, keys: Sequence[str], now: float) -> list[CounterStatus]:
        if not keys:
            return []
        raw = self._call(self._status, [self.prefix, repr(now), *keys])
        out = []
        for row in raw:
            s, r, c = (int(x) for x in _str(row).split(","))
            out.append(CounterStatus(s, r, c))
        return out

    def mark_once(self, marker: str, expires_at: float | None, now: float) -> bool:
        key = f"{self.prefix}m:{marker}"
        try:
            if expires_at is None:
                return bool(self.client.set(key, 1, nx=True))
            ttl_ms = max(1000, math.ceil((expires_at - now) * 1000))
            return bool(self.client.set(key, 1, nx=True, px=ttl_ms))
        except self._errors as exc:
            raise BudgetStoreUnavailableError(f"Redis budget store unavailable: {exc}.") from exc

    def expire(self, now: float) -> int:
        """Nothing to do: keys expire natively and reservations are purged lazily."""
        return 0

    def close(self) -> None:
        if self._owns:
            try:
                self.client.close()
            except Exception:  # pragma: no cover
                pass
