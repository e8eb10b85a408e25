#!lua
-- Admission of one purchase, atomically: the only code that takes stock.
-- The shebang makes redis check memory before the script runs (Redis 7), so an
-- out-of-memory abort can never stop it halfway.
-- With several stock shards (SPILLWAY_STOCK_SHARDS) it runs on the buyer's home shard:
-- 'sale', 'units' and 'idem' are that shard's keys, so the limit and the idempotency key
-- are checked exactly, in one place per buyer.
-- KEYS: sale (shard) hash, units-per-buyer hash, idempotency hash, order hash, outbox
--       stream, payment deadlines zset, the buyer's order set, the drain-nudge marker
-- ARGV: sale id, buyer id, quantity, idempotency key ('' for none), now (ms), order id,
--       units borrowed from other shards to add here first (0 for none),
--       final: '1' refuses 'sold_out'; '0' answers 'short' (the caller will borrow),
--       retry: '1' when the caller's previous call answered 'short',
--       the number n of the buyer's rate limits (0 or absent: none), then each limit's
--       most hits and window in seconds; their counters are KEYS[9 … 8 + n]; then the
--       request's id ('' or absent: none), carried in the outbox entry to the worker's log
local sale, units, idem, order, outbox, deadlines, buyer_orders, nudged =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local sale_id, buyer, qty, key, now, order_id =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), ARGV[6]
local deposit, final, retry = tonumber(ARGV[7] or '0'), (ARGV[8] or '1') == '1',
  ARGV[9] == '1'

-- The buyer's rate limits first, in this same round trip (a separate one cost ~40 % of the
-- purchase's own time): fixed windows, each counter expiring with its window. A refusal
-- is counted in the sale's stats here too, if redis knows the sale.
local limits = tonumber(ARGV[10] or '0')
local request_id = ARGV[11 + 2 * limits] or ''
for i = 1, limits do
  local counter = KEYS[8 + i]
  local hits = redis.call('INCR', counter)
  if hits == 1 then redis.call('EXPIRE', counter, ARGV[10 + 2 * i]) end
  if hits > tonumber(ARGV[9 + 2 * i]) then
    if redis.call('EXISTS', sale) == 1 then
      redis.call('HINCRBY', sale, 'rejected_rate_limited', 1)
    end
    return {'rate_limited', redis.call('TTL', counter)}
  end
end

if redis.call('EXISTS', sale) == 0 then
  return {'not_found'}
end
-- Borrowed units land here whatever this purchase's fate: they are this shard's stock now.
if deposit > 0 then
  redis.call('HINCRBY', sale, 'remaining', deposit)
  redis.call('HINCRBY', sale, 'borrowed', deposit)
end
-- A 'short' answer counts as a sold-out refusal at once, so that a caller who then finds
-- every other shard empty can refuse without a third round trip; a retry takes it back.
if retry then
  redis.call('HINCRBY', sale, 'rejected_sold_out', -1)
end
if key ~= '' then
  local seen = redis.call('HGET', idem, buyer .. ':' .. key)
  if seen then
    -- Written again, unchanged: a write goes down the replication stream behind the first
    -- one, so the durability wait (WAIT) on this answer covers the reservation it repeats.
    redis.call('HSET', idem, buyer .. ':' .. key, seen)
    return {'duplicate', seen}
  end
end
local f = redis.call('HMGET', sale, 'starts_ms', 'ends_ms', 'per_user_limit', 'remaining',
                     'payment_timeout_s', 'open')
-- A draft (its database commit has not happened, or failed) is no sale yet.
if f[6] == '0' then
  return {'not_found'}
end
if now < tonumber(f[1]) or now >= tonumber(f[2]) then
  redis.call('HINCRBY', sale, 'rejected_sale_not_active', 1)
  return {'sale_not_active'}
end
local held = tonumber(redis.call('HGET', units, buyer) or '0')
if held + qty > tonumber(f[3]) then
  redis.call('HINCRBY', sale, 'rejected_limit_exceeded', 1)
  return {'limit_exceeded'}
end
local remaining = tonumber(f[4])
if remaining < qty then
  redis.call('HINCRBY', sale, 'rejected_sold_out', 1)
  if not final then
    return {'short', remaining}
  end
  return {'sold_out'}
end

-- Stock first: should anything below fail, the sale undersells; it never oversells.
redis.call('HINCRBY', sale, 'remaining', -qty)
redis.call('HINCRBY', units, buyer, qty)
local deadline = now + tonumber(f[5]) * 1000
redis.call('HSET', order, 'sale_id', sale_id, 'user_id', buyer, 'quantity', qty,
           'status', 'pending', 'created_ms', now, 'deadline_ms', deadline, 'key', key)
if key ~= '' then
  redis.call('HSET', idem, buyer .. ':' .. key, order_id)
end
redis.call('ZADD', deadlines, deadline, order_id)
redis.call('SADD', buyer_orders, order_id)
-- Ask the caller to wake a drainer when the outbox was idle, at most once a second
-- across all web processes: a Celery publish costs more than this whole script.
local nudge = redis.call('XLEN', outbox) == 0 and
  redis.call('SET', nudged, '1', 'NX', 'PX', 1000) ~= false
if request_id ~= '' then
  redis.call('XADD', outbox, '*', 'order', order_id, 'request', request_id)
else
  redis.call('XADD', outbox, '*', 'order', order_id)
end
return {'reserved', order_id, remaining - qty, nudge and 1 or 0}
