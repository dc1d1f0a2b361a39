"""Redis budget store: one Lua script per operation (``EVALSHA``, one round trip each).

Layout (``prefix`` default ``"tokenward:budget:"``):

* ``{prefix}c:{k}``: one hash per counter key ``k``: ``spent`` and ``calls`` (committed),
  ``held`` (the sum of the live reservations below), ``next`` (no reservation expires before
  it) and one field ``r:{id}`` = ``"{amount}:{expires_at}"`` per reservation holding budget
  on ``k``. It expires with its window.
* ``{prefix}res:{id}``: the keys and amounts one reservation holds (expiring shortly after
  it), so commit and release find what to drop; once committed, ``"="`` for
  ``commit_retention`` seconds, so a replayed commit changes nothing.
* ``{prefix}m:{marker}``: a threshold marker, expiring with its window.

A script reads a counter with one ``HMGET``; only when ``next`` has passed does it scan the
hash for expired reservations and drop them (at most once per reservation TTL and key), so a
crashed process's reservations stop counting the moment their TTL passes, with no background
job. A reserve of two budgets is five Redis commands, a commit seven. Expiries are relative to
the caller's clock (``EXPIRE now-relative``), so clock skew between app servers and Redis
does not delete live keys. Arguments travel as one string (fields separated by ``\\x1e``,
which :func:`store_key` never lets into a key). Scripts build key names from the prefix; on
Redis Cluster use a hash-tagged prefix such as ``"{tokenward}:"`` so every key lives in one
slot.

Amounts and each counter's ``spent`` stay below 2**53, where Lua numbers are exact integers
(a commit that would pass it is refused with ``BudgetStoreError``); limits above 2**53 are
compared to within a few units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenward.budgets._store import (
    DEFAULT_COMMIT_RETENTION,
    CommitItem,
    CommitResult,
    CounterStatus,
    ReserveItem,
    ReserveResult,
    check_amount,
    check_limit,
    store_key,
)
from tokenward.errors import (
    BudgetStoreError,
    BudgetStoreUnavailableError,
    IntegrationUnavailableError,
)

__all__ = ["RedisBudgetStore"]

_SEP = "\x1e"

# Lua helpers every script starts with (plain functions, no upvalues: cheap to define per call)
_HELPERS = r"""
-- drop expired reservations of counter hash c at time now; returns (held, next) of the live ones
local function purge(c, now)
  local all = redis.call('HGETALL', c)
  local held, soonest = 0, 0
  for j = 1, #all, 2 do
    if string.sub(all[j], 1, 2) == 'r:' then
      local a, e = string.match(all[j + 1], '^(%d+):(.+)$')
      a, e = tonumber(a), tonumber(e)
      if e <= now then
        redis.call('HDEL', c, all[j])
      else
        held = held + a
        if soonest == 0 or e < soonest then soonest = e end
      end
    end
  end
  redis.call('HSET', c, 'held', held, 'next', soonest)
  return held, soonest
end

-- give back the hold field `hold` (amount a) on counter hash c, if it is still there
local function unhold(c, hold, a)
  if redis.call('HDEL', c, hold) == 1 then redis.call('HINCRBY', c, 'held', -tonumber(a)) end
end
"""

# shared by every script: ARGV[1] is the prefix, ARGV[2] the fields
_COMMON = (
    _HELPERS
    + r"""
local P = ARGV[1]
local f, nf = {}, 0
for s in string.gmatch(ARGV[2], '([^\30]*)\30') do nf = nf + 1; f[nf] = s end
local pos = 0
local function nxt() pos = pos + 1; return f[pos] end
local now = tonumber(nxt())

-- spent, held, next, calls, existed of counter key k (expired reservations dropped), and
-- the live hold of reservation rid on it (0 without rid)
local function read(k, rid)
  local c = P .. 'c:' .. k
  local v = redis.call('HMGET', c, 'spent', 'held', 'next', 'calls', 'r:' .. (rid or ''))
  local s, h, n = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
  if h > 0 and now >= n then h, n = purge(c, now) end
  local own = 0
  if rid and v[5] then
    local a, e = string.match(v[5], '^(%d+):(.+)$')
    if tonumber(e) > now then own = tonumber(a) end
  end
  return s, h, n, tonumber(v[4]) or 0, (v[1] or v[2]) and true or false, own
end

-- the keys and amounts of a reservation record ({} for none or "=" (committed))
local function holds(v)
  local out = {}
  if not v or v == '=' then return out end
  local k
  for x in string.gmatch(v, '([^\30]*)\30') do
    if k then out[k] = tonumber(x); k = nil else k = x end
  end
  return out
end

"""
)

# Reserve and commit are the hot path: without _COMMON's closures over the fields, fields
# read by index (each Lua step costs inside Redis; see benchmarks/bench_budgets.py).
# fields: now ttl rid n_items {amount limit n_read read_keys...}* n_writes {key amount expires}*
_RESERVE = (
    _HELPERS
    + r"""
local P = ARGV[1]
local f, nf = {}, 0
for s in string.gmatch(ARGV[2], '([^\30]*)\30') do nf = nf + 1; f[nf] = s end
local now, ttl, rid = tonumber(f[1]), tonumber(f[2]), f[3]
local exp = now + ttl
local hold = 'r:' .. rid
local S, H, N, X = {}, {}, {}, {}  -- per key: spent, held without rid's own hold, next, existed
local function load(k)
  local c = P .. 'c:' .. k
  local v = redis.call('HMGET', c, 'spent', 'held', 'next', hold)
  local h, n = tonumber(v[2]) or 0, tonumber(v[3]) or 0
  if h > 0 and now >= n then h, n = purge(c, now) end
  if v[4] then
    local a, e = string.match(v[4], '^(%d+):(.+)$')
    if tonumber(e) > now then h = h - tonumber(a) end
  end
  S[k], H[k], N[k], X[k] = tonumber(v[1]) or 0, h, n, (v[1] or v[2]) and true or false
end
local out, p = {0}, 5
for i = 1, tonumber(f[4]) do
  local a, l, s, h = tonumber(f[p]), f[p + 1], 0, 0
  local last = p + 2 + tonumber(f[p + 2])
  for q = p + 3, last do
    local k = f[q]
    if not S[k] then load(k) end
    s, h = s + S[k], h + H[k]
  end
  p = last + 1
  out[#out + 1] = s
  out[#out + 1] = h
  if l ~= '' and s + h + a > tonumber(l) then
    out[1] = i
    return out
  end
end
-- every item fits: hold the amounts (one write per distinct key)
local written, record, until_ = {}, {}, string.format('%.3f', exp)
for _ = 1, tonumber(f[p]) do
  local key, a, e = f[p + 1], f[p + 2], f[p + 3]
  p = p + 3
  if not S[key] then load(key) end
  local h, n = H[key], N[key]
  local soonest = exp
  if h > 0 and n > 0 and n < exp then soonest = n end
  local c = P .. 'c:' .. key
  redis.call('HSET', c, 'held', h + tonumber(a), hold, a .. ':' .. until_, 'next', soonest)
  if not X[key] and e ~= '' then
    redis.call('EXPIRE', c, math.max(1, math.ceil(tonumber(e) - now)))
  end
  written[key] = true
  record[#record + 1] = key
  record[#record + 1] = a
end
record[#record + 1] = ''
local prev = redis.call('SET', P .. 'res:' .. rid, table.concat(record, '\30'),
                        'EX', math.ceil(ttl + 60), 'GET')
if prev and prev ~= '=' then  -- an earlier reservation of rid on keys not used now
  local k
  for x in string.gmatch(prev, '([^\30]*)\30') do
    if not k then
      k = x
    else
      if not written[k] then unhold(P .. 'c:' .. k, hold, x) end
      k = nil
    end
  end
end
return out
"""
)

# fields: now rid keep n_writes {key amount expires}* n_items {expires n_read read_keys... n_marks
# {at marker}*}*
_COMMIT = (
    _HELPERS
    + r"""
local P = ARGV[1]
local f, nf = {}, 0
for s in string.gmatch(ARGV[2], '([^\30]*)\30') do nf = nf + 1; f[nf] = s end
local now, rid, keep = tonumber(f[1]), f[2], tonumber(f[3])
local rk = P .. 'res:' .. rid
local prev = redis.call('SET', rk, '=', 'EX', math.ceil(keep), 'GET')
if prev == '=' then return {0} end
local hold, held = 'r:' .. rid, {}  -- held: key -> amount this reservation holds on it
if prev then
  local k
  for x in string.gmatch(prev, '([^\30]*)\30') do
    if k then held[k] = x; k = nil else k = x end
  end
end
-- read every counter first: a commit that cannot be applied whole changes nothing
local nw, C, V, p = tonumber(f[4]), {}, {}, 5
for j = 1, nw do
  local key = f[p]
  local c = P .. 'c:' .. key
  local v = redis.call('HMGET', c, 'spent', 'calls', 'held', hold)
  local s = (tonumber(v[1]) or 0) + tonumber(f[p + 1])
  if s > 9007199254740991 then
    if prev then redis.call('SET', rk, prev, 'KEEPTTL') else redis.call('DEL', rk) end
    return redis.error_reply('ERR spent of budget counter ' .. key .. ' would pass 2**53')
  end
  v[1] = s
  C[j], V[j] = c, v
  p = p + 3
end
local spent = {}
p = 5
for j = 1, nw do
  local key, e, c, v = f[p], f[p + 2], C[j], V[j]
  local s, calls, h = v[1], (tonumber(v[2]) or 0) + 1, tonumber(v[3]) or 0
  if v[4] then
    h = h - tonumber(string.match(v[4], '^(%d+):'))
    redis.call('HDEL', c, hold)
  end
  held[key] = nil
  redis.call('HSET', c, 'spent', s, 'calls', calls, 'held', h)
  if calls == 1 and e ~= '' then
    redis.call('EXPIRE', c, math.max(1, math.ceil(tonumber(e) - now)))
  end
  spent[key] = s
  p = p + 3
end
for k, a in pairs(held) do unhold(P .. 'c:' .. k, hold, a) end  -- reserved, not committed
local out = {1}
for _ = 1, tonumber(f[p]) do
  local e, s, last = f[p + 1], 0, p + 2 + tonumber(f[p + 2])
  for q = p + 3, last do
    local k = f[q]
    s = s + (spent[k] or tonumber(redis.call('HGET', P .. 'c:' .. k, 'spent')) or 0)
  end
  out[#out + 1] = s
  local nm = tonumber(f[last + 1])
  for q = last + 2, last + 2 * nm, 2 do
    if s >= tonumber(f[q]) then
      local mk, set = P .. 'm:' .. f[q + 1], nil
      if e == '' then
        set = redis.call('SET', mk, 1, 'NX')
      else
        set = redis.call('SET', mk, 1, 'NX', 'EX', math.max(1, math.ceil(tonumber(e) - now)))
      end
      if set then out[#out + 1] = f[q + 1] end
    end
  end
  p = last + 1 + 2 * nm
  out[#out + 1] = ''
end
return out
"""
)

# fields: now rid
_RELEASE = (
    _COMMON
    + r"""
local rid = nxt()
local rk = P .. 'res:' .. rid
local v = redis.call('GET', rk)
if not v or v == '=' then return 0 end
for k, a in pairs(holds(v)) do unhold(P .. 'c:' .. k, 'r:' .. rid, a) end
redis.call('DEL', rk)
return 1
"""
)

# fields: now rid ttl
_EXTEND = (
    _COMMON
    + r"""
local rid, ttl = nxt(), tonumber(nxt())
local alive = 0
for k, _ in pairs(holds(redis.call('GET', P .. 'res:' .. rid))) do
  local c = P .. 'c:' .. k
  local v = redis.call('HGET', c, 'r:' .. rid)
  if v then
    local a, e = string.match(v, '^(%d+):(.+)$')
    if tonumber(e) > now then
      alive = 1
      if tonumber(e) < now + ttl then
        redis.call('HSET', c, 'r:' .. rid, string.format('%s:%.3f', a, now + ttl))
      end
    end
  end
end
if alive == 1 then
  local rk = P .. 'res:' .. rid
  if redis.call('TTL', rk) < ttl + 60 then redis.call('EXPIRE', rk, math.ceil(ttl + 60)) end
end
return alive
"""
)

# fields: now key*
_STATUS = (
    _COMMON
    + r"""
local out = {}
for i = 2, nf do
  local s, h, _, calls = read(f[i])
  out[#out + 1] = s
  out[#out + 1] = h
  out[#out + 1] = calls
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


def _s(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def _add(writes: dict[str, list[Any]], key: str, amount: int, expires_at: float | None) -> None:
    """Sum the amounts of items writing to one key (a store writes each key once)."""
    w = writes.get(key)
    if w is None:
        writes[key] = [amount, expires_at]
    else:
        w[0] += amount
        if expires_at is not None and (w[1] is None or expires_at > w[1]):
            w[1] = expires_at


def _with_writes(fields: list[str], writes: dict[str, list[Any]]) -> list[str]:
    fields.append(str(len(writes)))
    for key, (amount, expires_at) in writes.items():
        fields += (key, str(amount), _s(expires_at))
    return fields


def _pack(fields: Sequence[str]) -> str:
    return _SEP.join(fields) + _SEP


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class RedisBudgetStore:
    """Budget counters in Redis (redis-py). Pass a URL (``redis://host:6379/0``,
    ``unix:///tmp/redis.sock``) or an existing ``redis.Redis`` client.

    Connection failures, timeouts and a server that is loading, read-only or out of memory
    raise ``BudgetStoreUnavailableError`` (then ``Budgets`` applies its ``fail_mode``); a value
    the server rejects raises ``BudgetStoreError``.

    Args:
        url: a Redis URL or a ``redis.Redis`` client.
        prefix: prefix of every key the store writes.
        socket_timeout: seconds before an unresponsive server counts as unavailable.
        commit_retention: seconds a committed reservation id is remembered (replayed commits
            within it are applied once).
    """

    def __init__(
        self,
        url: str | Any,
        *,
        prefix: str = "tokenward:budget:",
        socket_timeout: float = 2.0,
        commit_retention: float = DEFAULT_COMMIT_RETENTION,
    ) -> None:
        redis = _redis()
        exc = redis.exceptions
        self._unavailable = (
            exc.ConnectionError,  # also AuthenticationError, BusyLoadingError
            exc.TimeoutError,
            exc.ReadOnlyError,
            OSError,
        )
        self._rejected = (exc.RedisError, UnicodeError, ValueError, OverflowError)
        self._noscript = exc.NoScriptError
        if isinstance(url, str):
            self.client = redis.Redis.from_url(
                url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
            )
            self._owns = True
        else:
            self.client = url
            self._owns = False
        self._execute = self.client.execute_command
        self.prefix = prefix
        self.commit_retention = commit_retention
        self._reserve = self.client.register_script(_RESERVE)
        self._commit = self.client.register_script(_COMMIT)
        self._release = self.client.register_script(_RELEASE)
        self._extend = self.client.register_script(_EXTEND)
        self._status = self.client.register_script(_STATUS)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBudgetStore:
        """``redis://[:password@]host:6379/0``, ``rediss://…`` (TLS) or
        ``unix:///path/redis.sock?db=0``."""
        return cls(url, **options)

    def _call(self, script: Any, fields: Sequence[str]) -> Any:
        try:
            packed = _pack(fields)
            try:  # EVALSHA directly: redis-py's Script.__call__ costs a few µs more per call
                return self._execute("EVALSHA", script.sha, 0, self.prefix, packed)
            except self._noscript:  # not loaded on this server (yet): Script loads it
                return script(keys=[], args=[self.prefix, packed])
        except self._unavailable as exc:
            raise BudgetStoreUnavailableError(
                f"Redis budget store unavailable: {exc}. Check the server is reachable."
            ) from exc
        except self._rejected as exc:
            text = str(exc)
            if text.startswith(("OOM", "MISCONF", "LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN")):
                raise BudgetStoreUnavailableError(
                    f"Redis budget store cannot serve requests: {text}. Check the server."
                ) from exc
            raise BudgetStoreError(
                f"Redis budget store rejected this call: {type(exc).__name__}: {text}. Check "
                f"the amounts and keys passed to the store."
            ) from exc

    def reserve(
        self, items: Sequence[ReserveItem], reservation_id: str, ttl: float, now: float
    ) -> ReserveResult:
        fields = [repr(now), repr(float(ttl)), store_key(reservation_id), str(len(items))]
        writes: dict[str, list[Any]] = {}
        for it in items:
            limit = check_limit(it.limit)
            amount = check_amount(it.amount)
            keys = it.keys
            fields += (str(amount), "" if limit is None else str(limit), str(len(keys)))
            fields += map(store_key, keys)
            _add(writes, store_key(it.key), amount, it.expires_at)
        out = self._call(self._reserve, _with_writes(fields, writes))
        totals = tuple((int(out[j]), int(out[j + 1])) for j in range(1, len(out), 2))
        if out[0]:
            return ReserveResult(False, totals, int(out[0]) - 1)
        return ReserveResult(True, totals)

    def commit(self, reservation_id: str, items: Sequence[CommitItem], now: float) -> CommitResult:
        writes: dict[str, list[Any]] = {}
        for it in items:
            _add(writes, store_key(it.key), check_amount(it.amount), it.expires_at)
        fields = _with_writes(
            [repr(now), store_key(reservation_id), repr(float(self.commit_retention))], writes
        )
        fields.append(str(len(items)))
        originals: dict[str, str] = {}
        for it in items:
            keys = it.keys
            fields += (_s(it.expires_at), str(len(keys)))
            fields += map(store_key, keys)
            fields.append(str(len(it.marks)))
            for at, marker in it.marks:
                safe = store_key(marker)
                originals[safe] = marker
                fields += (str(at), safe)
        out = self._call(self._commit, fields)
        if not out[0]:
            return CommitResult(False)
        spent: list[int] = []
        fired: set[str] = set()
        j = 1
        for _ in items:
            spent.append(int(out[j]))
            j += 1
            while (marker := _text(out[j])) != "":
                fired.add(originals[marker])
                j += 1
            j += 1
        return CommitResult(True, tuple(spent), frozenset(fired))

    def release(self, reservation_id: str, now: float) -> None:
        self._call(self._release, [repr(now), store_key(reservation_id)])

    def extend(self, reservation_id: str, ttl: float, now: float) -> bool:
        return bool(
            self._call(self._extend, [repr(now), store_key(reservation_id), repr(float(ttl))])
        )

    def status(self, keys: Sequence[str], now: float) -> list[CounterStatus]:
        if not keys:
            return []
        out = self._call(self._status, [repr(now), *map(store_key, keys)])
        return [
            CounterStatus(int(out[j]), int(out[j + 1]), int(out[j + 2]))
            for j in range(0, len(out), 3)
        ]

    def expire(self, now: float) -> int:
        """Nothing to do: keys expire natively and reservations are dropped lazily."""
        return 0

    def close(self) -> None:
        if self._owns:
            self.client.close()  # disconnects the pool; no round trip, cannot fail
